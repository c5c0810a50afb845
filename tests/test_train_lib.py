"""Tests of the outer step and the training loop on tiny shapes and synthetic shards."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

import helpers
from metadrop_tf import checkpoints
from metadrop_tf import model as model_lib
from metadrop_tf import train_lib


def _step_for(config):
  model = model_lib.build_model(config)
  optimizer = train_lib.make_optimizer(model, config)
  return model, train_lib.make_outer_step(model, optimizer, config)


def _episode(config, seed=0):
  return helpers.random_episode(config.metabatch, config.way, config.shot, config.query,
                                config.image_shape, seed, dtype=np.float32)


def test_outer_step_traces_once_for_new_meta_batches():
  config = helpers.tiny_config()
  _, step = _step_for(config)
  for i in range(10):
    out = step(_episode(config, seed=i), tf.constant(i, tf.int64))
  assert step.experimental_get_tracing_count() == 1
  assert set(out) == {'loss', 'acc', 'loss_pre', 'acc_pre'}


@pytest.mark.parametrize('maml', [False, True])
def test_overfits_one_episode_and_trains_the_right_variables(maml):
  config = helpers.tiny_config(maml=maml, channels=8, meta_lr=3e-3, n_steps=1)
  model, step = _step_for(config)
  phi = [v.numpy().copy() for v in model.phi.values()]
  theta = [v.numpy().copy() for v in model.theta.values()]
  episode = _episode(config)
  losses = [float(step(episode, tf.constant(i, tf.int64))['loss']) for i in range(200)]
  assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), (losses[:10], losses[-10:])
  phi_moved = any(np.abs(v.numpy() - p).max() > 0 for v, p in zip(model.phi.values(), phi))
  assert phi_moved != maml
  assert all(np.abs(v.numpy() - t).max() > 0 for v, t in zip(model.theta.values(), theta))


def test_same_seed_same_loss():
  config = helpers.tiny_config()
  runs = []
  for _ in range(2):
    _, step = _step_for(config)
    runs.append([float(step(_episode(config, i), tf.constant(i, tf.int64))['loss'])
                 for i in range(2)])
  assert runs[0] == runs[1]


def test_train_writes_the_run_directory_and_resumes(tmp_path):
  data_dir, workdir = str(tmp_path / 'data'), str(tmp_path / 'run')
  helpers.write_tiny_shards(data_dir)
  config = helpers.tiny_config(data_dir, n_train_iters=2, metabatch=1)
  checkpoints.write_config(workdir, config)
  assert train_lib.train(config, workdir, progress=False) == 2
  assert os.path.exists(os.path.join(workdir, 'ckpt', 'ckpt-2.index'))
  assert glob.glob(os.path.join(workdir, 'tb', 'train', 'events.out.tfevents.*'))
  assert glob.glob(os.path.join(workdir, 'tb', 'eval', 'events.out.tfevents.*'))
  assert 'train | step 2' in open(os.path.join(workdir, 'train.log')).read()
  assert train_lib.train(config.replace(n_train_iters=4), workdir, progress=False) == 4
  log = open(os.path.join(workdir, 'train.log')).read()
  assert 'resumed at iteration 2 of 4' in log and 'train | step 1 ' not in log.split('resumed')[1]
  straight = str(tmp_path / 'straight')
  checkpoints.write_config(straight, config.replace(n_train_iters=4))
  train_lib.train(config.replace(n_train_iters=4), straight, progress=False)
  resumed, fresh = (model_lib.build_model(config) for _ in range(2))
  checkpoints.restore(checkpoints.make_checkpoint(resumed), workdir)
  checkpoints.restore(checkpoints.make_checkpoint(fresh), straight)
  for a, b in zip(resumed.meta_variables(), fresh.meta_variables()):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
