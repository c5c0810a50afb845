"""Tests of meta-test evaluation: fixed episode stream, the result file."""

import json
import logging
import os

import numpy as np
import pytest

import helpers
from metadrop_tf import learners
from metadrop_tf import metrics
from metadrop_tf.episodes import data
from metadrop_tf.evaluation import eval_lib


def test_fixed_stream_and_result_file(tmp_path):
  config, savedir = helpers.saved_run(tmp_path, n_test_iters=5)
  images = data.load_splits(config, ('test',))['test']
  model = learners.build(config)
  first = eval_lib.evaluate(model, images, config, 'test', 5, 2, progress=False)
  again = eval_lib.evaluate(model, images, config, 'test', 5, 2, metabatch=1, progress=False)
  assert len(first['per_episode_accuracy']) == 5
  np.testing.assert_allclose(first['per_episode_accuracy'], again['per_episode_accuracy'])
  mean, ci = metrics.mean_ci95(first['per_episode_accuracy'])
  assert first['accuracy'] == pytest.approx(100 * mean) and first['ci95'] == pytest.approx(100 * ci)
  result = eval_lib.run(config, savedir, progress=False, mc_samples=2)  # the same weights
  saved = json.load(open(os.path.join(savedir, 'eval_test.json')))
  assert saved['checkpoint_step'] == 3 and saved['n_episodes'] == 5 and saved['mc_samples'] == 2
  np.testing.assert_allclose(saved['per_episode_accuracy'], first['per_episode_accuracy'])
  assert result['accuracy'] == pytest.approx(first['accuracy'])


def test_episodes_per_call_fits_memory_and_obeys_the_flag():
  from metadrop_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  gib = 2 ** 30
  one_shot = config_lib.Config().validate()
  five_shot = one_shot.replace(shot=5)
  assert eval_lib.episodes_per_call(one_shot, 24 * gib) == one_shot.metabatch
  assert eval_lib.episodes_per_call(five_shot, 24 * gib) == 1  # ~8 GB per episode
  assert eval_lib.episodes_per_call(five_shot.replace(maml=True), 24 * gib) == 4  # no MC copies
  assert eval_lib.episodes_per_call(one_shot, 1) == 1
  assert eval_lib.episodes_per_call(five_shot.replace(test_metabatch=3), 1) == 3
  assert 4 < eval_lib.episodes_per_call(one_shot.replace(metabatch=100), 24 * gib) < 100


def test_memory_advice_names_the_chunks_that_fit_only_when_an_episode_does_not():
  from metadrop_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from metadrop_tf.nets import backbones  # pylint: disable=g-import-not-at-top
  gib = 2 ** 30
  five_shot = config_lib.Config(shot=5).validate()
  per_episode = backbones.meta_test_bytes_per_episode(five_shot)
  assert eval_lib.memory_advice(five_shot, 3 * per_episode) is None
  advice = eval_lib.memory_advice(five_shot, int(1.5 * per_episode))
  # K = 2 leaves half an episode, over a quarter of the memory; K = 3 fits.
  assert '`test_mc_chunks=3`' in advice and '10 at a time' in advice
  assert 'GiB' in advice and '\n' not in advice
  chunked = five_shot.replace(test_mc_chunks=3)
  assert '`test_mc_chunks=10`' in eval_lib.memory_advice(chunked, int(0.5 * per_episode))
  assert 'may run out of memory' in eval_lib.memory_advice(five_shot, gib // 1024)


def test_evaluation_of_a_run_warns_once_when_an_episode_may_not_fit(tmp_path, monkeypatch,
                                                                  caplog):
  from metadrop_tf.nets import backbones  # pylint: disable=g-import-not-at-top
  config, savedir = helpers.saved_run(tmp_path, n_test_iters=2)
  assert config.noisy
  with caplog.at_level(logging.WARNING):
    eval_lib.run(config, savedir, progress=False, mc_samples=2)
  assert not [r for r in caplog.records if 'meta-test episode needs' in r.getMessage()]
  monkeypatch.setattr(backbones, 'meta_test_bytes_per_episode', lambda config: 2 ** 50)
  with caplog.at_level(logging.WARNING):
    eval_lib.run(config, savedir, progress=False, mc_samples=2)
  warnings = [r.getMessage() for r in caplog.records if 'meta-test episode needs' in r.getMessage()]
  assert len(warnings) == 1 and 'may run out of memory' in warnings[0]  # no K fits 1 PiB


@pytest.mark.slow
def test_without_a_progress_bar_evaluation_logs_its_progress(tmp_path, caplog):
  data_dir = str(tmp_path / 'data')
  helpers.write_tiny_shards(data_dir)
  config = helpers.tiny_config(data_dir)
  images = data.load_splits(config, ('test',))['test']
  model = learners.build(config)
  with caplog.at_level(logging.INFO):
    result = eval_lib.evaluate(model, images, config, 'test', 5, 2, metabatch=2, progress=False,
                               log_interval_s=0)
    eval_lib.evaluate(model, images, config, 'test', 5, 2, metabatch=2, progress=False)
  lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith('eval test |')]
  assert [line.split(' | ')[1] for line in lines] == ['2/5 episodes', '4/5 episodes',
                                                      '5/5 episodes']
  assert f"accuracy so far {result['accuracy']:.2f} %" in lines[-1]


def _counting_steps(monkeypatch, fail_after=None):
  """Wraps eval_lib.make_eval_step: returns the list of first-task indices each call gets;
  the call after `fail_after` calls raises KeyboardInterrupt (Ctrl-C mid-evaluation)."""
  calls, make = [], eval_lib.make_eval_step

  def make_counting(*args):
    step = make(*args)

    def counting(episode, first_task):
      if fail_after is not None and len(calls) == fail_after:
        raise KeyboardInterrupt
      calls.append(int(first_task))
      return step(episode, first_task)
    return counting
  monkeypatch.setattr(eval_lib, 'make_eval_step', make_counting)
  return calls


@pytest.mark.slow
def test_an_interrupted_evaluation_continues_where_it_stopped(tmp_path, monkeypatch):
  config, savedir = helpers.saved_run(tmp_path, n_test_iters=7, test_metabatch=2)
  partial = os.path.join(savedir, 'eval_test.partial.json')
  with monkeypatch.context() as patch:
    _counting_steps(patch, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
      eval_lib.run(config, savedir, progress=False)
  assert len(json.load(open(partial))['outputs']['acc']) == 4  # two calls of 2 episodes
  with monkeypatch.context() as patch:
    calls = _counting_steps(patch)
    resumed = eval_lib.run(config.replace(test_metabatch=1), savedir, progress=False)
  assert calls == [4, 5, 6]  # only the episodes not done, whatever the episodes per call
  assert not os.path.exists(partial)
  whole = eval_lib.run(config, savedir, progress=False)
  np.testing.assert_allclose(resumed['per_episode_accuracy'], whole['per_episode_accuracy'])
  assert resumed['accuracy'] == pytest.approx(whole['accuracy'])


@pytest.mark.slow
def test_a_partial_evaluation_of_other_settings_is_not_reused(tmp_path, monkeypatch):
  config, savedir = helpers.saved_run(tmp_path, n_test_iters=4, test_metabatch=2)
  with monkeypatch.context() as patch:
    _counting_steps(patch, fail_after=1)
    with pytest.raises(KeyboardInterrupt):
      eval_lib.run(config, savedir, progress=False, mc_samples=2)
  with monkeypatch.context() as patch:
    calls = _counting_steps(patch)
    eval_lib.run(config, savedir, progress=False, mc_samples=3)
  assert calls == [0, 2]
  with open(os.path.join(savedir, 'eval_test.partial.json'), 'w') as f:
    f.write('{"key": ')  # a file cut short
  with monkeypatch.context() as patch:
    calls = _counting_steps(patch)
    eval_lib.run(config, savedir, progress=False)
  assert calls == [0, 2]


def test_attacked_evaluation_writes_clean_and_attacked_accuracy_per_eps(tmp_path):
  from metadrop_tf.evaluation import attacks  # pylint: disable=g-import-not-at-top
  config, savedir = helpers.saved_run(tmp_path, n_test_iters=4, maml=True)
  attack = attacks.Attack('linf', (0.02, 0.3), steps=3)
  result = eval_lib.run(config, savedir, progress=False, attack=attack)
  assert result['path'].endswith('eval_test_pgd_linf.json')
  saved = json.load(open(result['path']))
  clean = eval_lib.run(config, savedir, progress=False)
  assert saved['per_episode_accuracy'] == clean['per_episode_accuracy']  # same tasks
  assert [row['eps'] for row in saved['attacked']] == [0.02, 0.3]
  assert saved['attack']['steps'] == 3 and saved['attack']['norm'] == 'linf'
  strong = saved['attacked'][1]['per_episode_accuracy']
  assert np.mean(strong) <= np.mean(saved['per_episode_accuracy'])
  assert len(strong) == 4 and not os.path.exists(os.path.join(savedir,
                                                              'eval_test_pgd_linf.partial.json'))


def test_another_episode_seed_goes_beside_the_run_result_and_outputs_are_kept(tmp_path):
  config, savedir = helpers.saved_run(tmp_path, n_test_iters=4)
  own = eval_lib.run(config, savedir, progress=False, seed=config.seed)
  other = eval_lib.run(config, savedir, progress=False, seed=config.seed + 3)
  assert own['path'] == os.path.join(savedir, 'eval_test.json') and own['seed'] == config.seed
  assert other['path'] == os.path.join(savedir, f'eval_test_seed{config.seed + 3}.json')
  assert other['seed'] == config.seed + 3 and other['loss'] != own['loss']  # other episodes
  images = data.load_splits(config, ('test',))['test']
  kept = eval_lib.evaluate(learners.build(config), images, config, 'test', 3, 1,
                           progress=False, keep_outputs=True)
  assert sorted(kept['outputs']) == ['acc', 'acc_pre', 'loss', 'loss_pre']
  np.testing.assert_array_equal(kept['outputs']['acc'], kept['per_episode_accuracy'])
