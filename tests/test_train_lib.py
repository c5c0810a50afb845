"""Tests of the outer step and the training loop on tiny shapes and synthetic shards."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

import helpers
from metadrop_tf import learners
from metadrop_tf.runtime import checkpoints
from metadrop_tf.train import train_lib
from metadrop_tf.train import train_step


def _step_for(config):
  model = learners.build(config)
  optimizer = train_step.make_optimizer(model, config)
  return model, train_step.make_outer_step(model, optimizer, config)


def _episode(config, seed=0):
  return helpers.random_episode(config.metabatch, config.way, config.shot, config.query,
                                config.image_shape, seed, dtype=np.float32)


def _call(step, episode, iteration, with_pre=True):
  return step(episode, tf.constant(iteration, tf.int64), tf.constant(with_pre))


@pytest.mark.slow
@pytest.mark.parametrize('maml', [False, True])
def test_overfits_one_episode_and_trains_the_right_variables(maml):
  config = helpers.tiny_config(maml=maml, channels=8, meta_lr=3e-3, n_steps=1)
  model, step = _step_for(config)
  phi = [v.numpy().copy() for v in model.network.phi.values()]
  theta = [v.numpy().copy() for v in model.network.theta.values()]
  episode = _episode(config)
  losses = [float(_call(step, episode, i)['loss']) for i in range(200)]
  assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), (losses[:10], losses[-10:])
  phi_moved = any(np.abs(v.numpy() - p).max() > 0 for v, p in zip(model.network.phi.values(), phi))
  assert phi_moved != maml
  assert all(np.abs(v.numpy() - t).max() > 0 for v, t in zip(model.network.theta.values(), theta))


@pytest.mark.slow
def test_two_builds_step_alike_with_or_without_pre_adaptation_metrics():
  """Two learners built from one config take the same steps (the seed fixes the weights and
  the noise), and the pre-adaptation metrics one of them reports change nothing else; the
  step traces once for new meta-batches."""
  config = helpers.tiny_config(pre_adapt_freq=3)
  (with_model, with_step), (without_model, without_step) = _step_for(config), _step_for(config)
  for i in range(2):
    episode = _episode(config, seed=i)
    expected = with_model.mean_pre_adaptation_outputs(episode)
    with_pre, without = _call(with_step, episode, i, True), _call(without_step, episode, i, False)
    assert set(with_pre) == {'loss', 'acc', 'loss_pre', 'acc_pre', 'grad_norm'}
    for key in ('loss_pre', 'acc_pre'):
      np.testing.assert_allclose(with_pre[key], expected[key], rtol=1e-6)
      assert np.isnan(without[key])
    assert float(with_pre['loss']) == float(without['loss'])
    for a, b in zip(with_model.meta_variables(), without_model.meta_variables()):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
  reported = [set(train_step.run_outer_step(with_step, _episode(config, seed=i), i, config))
              for i in range(1, 4)]
  every = {'loss', 'acc', 'grad_norm'}
  assert reported == [every, every, {*every, 'loss_pre', 'acc_pre'}]
  assert with_step.experimental_get_tracing_count() == 1


@pytest.mark.slow
def test_train_writes_the_run_directory_and_resumes(tmp_path):
  data_dir, savedir = str(tmp_path / 'data'), str(tmp_path / 'run')
  helpers.write_tiny_shards(data_dir)
  config = helpers.tiny_config(data_dir, n_train_iters=2, metabatch=1)
  checkpoints.write_config(savedir, config)
  assert train_lib.train(config, savedir, progress=False) == 2
  assert os.path.exists(os.path.join(savedir, 'ckpt', 'ckpt-2.index'))
  assert glob.glob(os.path.join(savedir, 'tb', 'train', 'events.out.tfevents.*'))
  assert glob.glob(os.path.join(savedir, 'tb', 'eval', 'events.out.tfevents.*'))
  assert 'train | iteration 2' in open(os.path.join(savedir, 'train.log')).read()
  assert train_lib.train(config.replace(n_train_iters=4), savedir, progress=False) == 4
  log = open(os.path.join(savedir, 'train.log')).read()
  assert 'resumed at iteration 2 of 4' in log
  assert 'train | iteration 1 ' not in log.split('resumed')[1]
  straight = str(tmp_path / 'straight')
  checkpoints.write_config(straight, config.replace(n_train_iters=4))
  train_lib.train(config.replace(n_train_iters=4), straight, progress=False)
  resumed, fresh = (learners.build(config) for _ in range(2))
  checkpoints.restore(checkpoints.make_checkpoint(resumed), savedir)
  checkpoints.restore(checkpoints.make_checkpoint(fresh), straight)
  for a, b in zip(resumed.meta_variables(), fresh.meta_variables()):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize('signals', [1, 2])
def test_sigterm_mid_iteration_saves_weights_and_counter_of_the_same_step(
    tmp_path, monkeypatch, signals):
  import signal  # pylint: disable=g-import-not-at-top
  data_dir, savedir = str(tmp_path / 'data'), str(tmp_path / 'run')
  helpers.write_tiny_shards(data_dir)
  config = helpers.tiny_config(data_dir, n_train_iters=100, metabatch=1, save_freq=100)
  checkpoints.write_config(savedir, config)
  real_step = train_step.run_outer_step

  def step_then_signal(outer_step, episode, step, cfg):
    values = real_step(outer_step, episode, step, cfg)
    if step == 2:  # after the optimizer update, before the loop counts the iteration
      for _ in range(signals):
        os.kill(os.getpid(), signal.SIGTERM)
    return values

  monkeypatch.setattr(train_step, 'run_outer_step', step_then_signal)
  previous = signal.getsignal(signal.SIGTERM)
  with pytest.raises(KeyboardInterrupt):
    train_lib.train(config, savedir, progress=False)
  assert signal.getsignal(signal.SIGTERM) is previous
  saved = glob.glob(os.path.join(savedir, 'ckpt', 'ckpt-*.index'))
  if signals == 2:  # stopped at once: only periodic checkpoints, none due yet
    assert not saved
    return
  assert [os.path.basename(p) for p in saved] == ['ckpt-3.index']
  model = learners.build(config)
  optimizer = train_step.make_optimizer(model, config)
  ckpt = checkpoints.make_checkpoint(model, optimizer)
  checkpoints.restore(ckpt, savedir)
  assert int(ckpt.step.numpy()) == 3 == int(optimizer.iterations.numpy())


def test_a_full_disk_is_one_line_and_keeps_the_earlier_checkpoints(tmp_path, monkeypatch):
  data_dir, savedir = str(tmp_path / 'data'), str(tmp_path / 'run')
  helpers.write_tiny_shards(data_dir)
  config = helpers.tiny_config(data_dir, n_train_iters=4, metabatch=1, save_freq=1,
                               eval_freq=100)
  real_save = tf.train.CheckpointManager.save

  def save_until_full(manager, checkpoint_number=None):
    if checkpoint_number >= 3:
      raise OSError(28, 'No space left on device')
    return real_save(manager, checkpoint_number=checkpoint_number)

  monkeypatch.setattr(tf.train.CheckpointManager, 'save', save_until_full)
  with pytest.raises(train_lib.WriteError) as err:
    train_lib.train(config, savedir, progress=False)
  message = str(err.value)
  assert 'cannot write checkpoint 3' in message and 'No space left' in message
  assert message.endswith('ckpt-2') and '\n' not in message
  assert sorted(os.listdir(os.path.join(savedir, 'ckpt'))) == [
      'checkpoint', 'ckpt-1.data-00000-of-00001', 'ckpt-1.index', 'ckpt-2.data-00000-of-00001',
      'ckpt-2.index']
