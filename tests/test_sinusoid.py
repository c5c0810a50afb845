"""Tests of the generated sinusoid tasks: the distribution of Finn et al., seeded and
deterministic like the image episodes, streamed as Episodes."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import helpers
from metadrop_tf.episodes import data
from metadrop_tf.episodes import sampling
from metadrop_tf.episodes import sinusoid
from metadrop_tf.export import export_lib
from metadrop_tf.runtime import checkpoints


def test_a_task_is_a_sinusoid_of_the_stated_ranges():
  sampler = sinusoid.SinusoidSampler(shot=5, query=7, seed=3, split='train')
  for index in range(50):
    amplitude, phase = sampler.task_parameters(index)
    support_x, support_y, query_x, query_y = sampler.task(index)
    assert 0.1 <= amplitude <= 5.0 and 0.0 <= phase <= np.pi
    assert support_x.shape == support_y.shape == (5, 1)
    assert query_x.shape == query_y.shape == (7, 1)
    for x, y in ((support_x, support_y), (query_x, query_y)):
      assert x.dtype == y.dtype == np.float32
      assert np.all((x >= -5) & (x <= 5))
      np.testing.assert_allclose(y, amplitude * np.sin(x.astype(np.float64) - phase),
                                 rtol=1e-5, atol=1e-5)


def test_tasks_depend_only_on_seed_split_and_index():
  a = sinusoid.SinusoidSampler(5, 10, seed=0, split='train')
  b = sinusoid.SinusoidSampler(5, 10, seed=0, split='train')
  for index in (0, 7, 123):
    for x, y in zip(a.task(index), b.task(index)):
      np.testing.assert_array_equal(x, y)
  others = [sinusoid.SinusoidSampler(5, 10, seed=1, split='train'),
            sinusoid.SinusoidSampler(5, 10, seed=0, split='test')]
  for other in others:
    assert not np.array_equal(a.task(0)[0], other.task(0)[0])
  assert not np.array_equal(a.task(0)[0], a.task(1)[0])


def test_the_distribution_covers_the_ranges():
  sampler = sinusoid.SinusoidSampler(5, 5, seed=0, split='train')
  parameters = np.array([sampler.task_parameters(i) for i in range(2000)])
  for column, (low, high) in enumerate((sinusoid.AMPLITUDE, sinusoid.PHASE)):
    values = parameters[:, column]
    assert abs(values.mean() - (low + high) / 2) < 0.05 * (high - low)
    assert values.min() < low + 0.01 * (high - low) and values.max() > high - 0.01 * (high - low)


def test_the_stream_gives_the_sampler_meta_batches_in_order():
  config = helpers.tiny_config(dataset='sinusoid', way=1, backbone='mlp', shot=4, query=6,
                               channels=0, metabatch=3)
  assert data.load_splits(config, ('train', 'test')) == {'train': None, 'test': None}
  sampler = sampling.make_sampler(config, 'test')
  episodes = list(sampling.make_dataset(sampler, 3, start=2, count=2))
  assert len(episodes) == 2
  for offset, episode in enumerate(episodes):
    expected = sampler.meta_batch(2 + offset, 3)
    assert episode.support_x.shape == (3, 4, 1) and episode.query_y.shape == (3, 6, 1)
    for got, want in zip(episode, expected):
      np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.slow
def test_the_newcomer_commands_train_evaluate_serve_and_plot(tmp_path, capsys):
  """The README's first commands on the shipped config (fewer iterations and tasks), run by the
  programs' code in this process: train, evaluate (MSE after adaptation below before), a
  SavedModel that adapts as the trained learner does (tests/test_export_lib.py loads
  SavedModels in a process without the package), and the curves figure."""
  savedir = str(tmp_path / 'run')
  flagfile = os.path.join(helpers.REPO, 'configs', 'sinusoid_maml.cfg')
  assert helpers.run_program('train', f'--flagfile={flagfile}', f'--savedir={savedir}',
                             '--n_train_iters=60', '--metabatch=5', '--eval_freq=60',
                             '--save_freq=60', '--eval_batches=2') == 0
  capsys.readouterr()
  assert helpers.run_program('evaluate', f'--savedir={savedir}', '--n_test_iters=100') == 0
  printed = capsys.readouterr().out
  assert 'sinusoid 5-shot MAML | test | iteration 60 | 100 tasks, 1 MC | mse ' in printed
  result = json.load(open(os.path.join(savedir, 'eval_test.json')))
  assert len(result['per_episode_mse']) == 100
  assert result['mse'] < result['mse_pre']
  np.testing.assert_allclose(result['loss'], result['mse'], rtol=1e-5)
  assert helpers.run_program('export', f'--savedir={savedir}') == 0
  served = tf.saved_model.load(os.path.join(savedir, 'export')).signatures['serving_default']
  x = np.linspace(-4, 4, 5, dtype=np.float32)[:, None]
  predictions = served(support_x=tf.constant(x), support_y=tf.constant(np.sin(x)),
                       query_x=tf.constant(x[:3] + 0.5))['predictions'].numpy()
  assert predictions.shape == (3, 1) and np.all(np.isfinite(predictions))
  config = checkpoints.read_config(savedir)  # the trained learner adapts to the same answers
  model, _ = export_lib.restore_learner(config, savedir)
  expected = export_lib.AdaptAndRegress(model, config).serve(
      tf.constant(x), tf.constant(np.sin(x)), tf.constant(x[:3] + 0.5))['predictions']
  np.testing.assert_allclose(predictions, expected, rtol=1e-5, atol=1e-6)
  assert helpers.run_program('export', f'--savedir={savedir}', '--mode=visualize') == 0
  assert os.path.getsize(os.path.join(savedir, 'visualization', 'curves.png')) > 10000
  with np.load(os.path.join(savedir, 'visualization', 'visualization.npz')) as dump:
    assert dump['predictions'].shape == (3, 2, 200) and dump['noisy'].shape == (3, 0, 200)
    np.testing.assert_allclose(dump['true'][0], sinusoid.curve(
        dump['amplitude'][0], dump['phase'][0], dump['x']), rtol=1e-5, atol=1e-5)
