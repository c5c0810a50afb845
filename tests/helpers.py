"""Shared tiny fixtures: configs, models, episodes and shards small enough for fast tests."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import tensorflow as tf

from metadrop_tf import config as config_lib
from metadrop_tf.cli import messages
from metadrop_tf.episodes import sampling
from metadrop_tf.nets import model as model_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_OMNIGLOT = os.path.join(REPO, '..', 'shared', 'data', 'omniglot')
TINY_IMAGE = (16, 16, 1)  # 16 -> 8 -> 4 -> 2 -> 1 after the 4 pools


class _EveryName:
  def __contains__(self, name):
    return True


def as_printed(error) -> str:
  """An error's message as the programs print it: each `setting` worded as its flag."""
  return messages.as_flags(str(error), _EveryName())


def tiny_model(noisy=True, dtype='float64', way=3, channels=2, seed=0, **kwargs):
  return model_lib.MetaDropoutNet(way, TINY_IMAGE, channels, noisy=noisy, dtype=dtype,
                                  seed=seed, **kwargs)


def random_episode(metabatch=2, way=3, shot=1, query=2, image_shape=TINY_IMAGE, seed=0,
                   dtype=np.float64):
  """A sampling.Episode of uniform random images, labels class by class."""
  rng = np.random.default_rng(seed)

  def labels(per_class):
    onehot = np.repeat(np.eye(way, dtype=dtype), per_class, axis=0)
    return tf.constant(np.tile(onehot[None], (metabatch, 1, 1)))

  def images(per_class):
    return tf.constant(rng.random((metabatch, way * per_class) + image_shape).astype(dtype))

  return sampling.Episode(images(shot), labels(shot), images(query), labels(query))


def write_tiny_shards(directory, classes=(12, 8), instances=6, size=28, channels=None,
                      fmt='npz', seed=0):
  """Writes train/test shards of random uint8 images; image (c, i) has pixel [0, 0] = c.

  Returns {split: array} as written ([classes, instances, size, size] or [..., channels]).
  """
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  out = {}
  for split, n in zip(('train', 'test'), classes):
    shape = (n, instances, size, size) + ((channels,) if channels else ())
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    marks = (slice(None), slice(None), 0)  # pixel row 0 (every channel, if any)
    images[marks + (0,)] = (np.arange(n, dtype=np.uint8)[:, None]
                            + (100 if split == 'test' else 0)).reshape(
                                (n, 1) + (1,) * (images.ndim - 4))
    images[marks + (1,)] = np.arange(instances, dtype=np.uint8).reshape(
        (1, instances) + (1,) * (images.ndim - 4))
    path = os.path.join(directory, f'{split}.{fmt}')
    if fmt == 'npz':
      np.savez_compressed(path, images=images)
    else:
      np.save(path, images)
    out[split] = images
  return out


def tiny_config(data_dir='', **changes):
  """A 3-way 1-shot 2-query Omniglot-shaped config with 4 channels and 1 inner step."""
  values = dict(dataset='omniglot', data_dir=data_dir, way=3, shot=1, query=2, metabatch=2,
                n_steps=1, inner_lr=0.1, meta_lr=1e-3, n_train_iters=4, n_test_iters=4,
                n_test_mc_samp=3, channels=4, save_freq=2, log_freq=1, eval_freq=2,
                eval_batches=2, seed=0)
  values.update(changes)
  return config_lib.Config(**values).validate()


def saved_run(root, checkpoints_at=(3,), manifest=False, **changes):
  """A run directory root/run (config.json, one checkpoint of the initial weights per entry of
  checkpoints_at) on tiny shards in root/data; returns (config, savedir)."""
  from metadrop_tf import learners  # pylint: disable=g-import-not-at-top
  from metadrop_tf.episodes import manifest as manifest_lib  # pylint: disable=g-import-not-at-top
  from metadrop_tf.runtime import checkpoints  # pylint: disable=g-import-not-at-top
  data_dir, savedir = os.path.join(str(root), 'data'), os.path.join(str(root), 'run')
  write_tiny_shards(data_dir)
  if manifest:
    manifest_lib.write(data_dir, ['train.npz', 'test.npz'])
  config = tiny_config(data_dir, **changes)
  ckpt = checkpoints.make_checkpoint(learners.build(config))
  manager = checkpoints.make_manager(ckpt, savedir)
  for step in checkpoints_at:
    ckpt.step.assign(step)
    manager.save(checkpoint_number=step)
  checkpoints.write_config(savedir, config)
  return config, savedir


def tiny_learner(name='metadrop', dtype='float64', n_steps=2, inner_lr=0.2, way=3, channels=2,
                 seed=0, **options):
  """A learner of the registry around tiny_model (noisy for metadrop or meta_dropout=True)."""
  from metadrop_tf import learners  # pylint: disable=g-import-not-at-top
  noisy = options.pop('meta_dropout', False) or name == 'metadrop'
  zero_head = options.get('zero_head', False)
  noise = {k: options.pop(k) for k in ('noise_type', 'noise_scale') if k in options}
  network = tiny_model(noisy=noisy, dtype=dtype, way=0 if zero_head else way,
                       channels=channels, seed=seed, **noise)
  if name == 'anil':
    options.setdefault('adapted', list(network.head_names))
  if name == 'fomaml':
    options['first_order'] = True
  return learners.REGISTRY[name](network, n_steps, inner_lr, **options)


def run_program(program, *args):
  """Exit status of `program` ('train', 'evaluate', 'export') run in this process with args
  as on the command line (flags parsed by absl, main guarded); 0 on success."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  from metadrop_tf.cli import main  # pylint: disable=g-import-not-at-top
  main.define_program_flags(program)
  flags.FLAGS.unparse_flags()
  try:
    main.run(program, [program, *args])
  except SystemExit as e:
    return e.code if isinstance(e.code, int) else (0 if e.code is None else e.code)
  return 0


# --- finite-difference checks of meta-gradients (float64 learners; used by several modules) --
FD_SEED = (7, 11)  # a tuple: a tensor here would start the TF runtime on import (test_threads)
FD_MC = 2  # MC samples of the support loss in these checks (training uses 1)


def meta_loss(learner, episode, iteration=None):
  seed = tf.constant(FD_SEED, tf.int32)
  return learner.meta_objective(episode, seed, iteration, mc_samples=FD_MC)['loss']


def meta_gradients(learner, episode, variables, iteration=None):
  with tf.GradientTape() as tape:
    loss = meta_loss(learner, episode, iteration)
  return tape.gradient(loss, variables)


def finite_difference(learner, episode, variable, index, iteration=None, h=1e-7):
  """Central difference. h is small because the meta-loss is only piecewise smooth: the inner
  gradients jump where a ReLU or max-pool switches, and on a tiny net such points are ~1e-4 away."""
  def at(delta):
    original = variable.numpy()
    bumped = original.copy()
    bumped[index] += delta
    variable.assign(bumped)
    value = float(meta_loss(learner, episode, iteration))
    variable.assign(original)
    return value
  return (at(h) - at(-h)) / (2 * h)


def check_against_finite_differences(learner, episode, variable, iteration=None):
  grad = meta_gradients(learner, episode, [variable], iteration)[0].numpy()
  assert np.abs(grad).max() > 0, variable.path
  rng = np.random.default_rng(0)
  indices = [np.unravel_index(np.argmax(np.abs(grad)), grad.shape)]
  indices += [tuple(rng.integers(0, s) for s in grad.shape) for _ in range(2)]
  for index in indices:
    numeric = finite_difference(learner, episode, variable, index, iteration)
    # atol: the central difference's rounding floor, ~1e-16 * |loss| / h, a few 1e-9.
    np.testing.assert_allclose(grad[index], numeric, rtol=1e-5, atol=3e-9)


def free_port() -> int:
  """A loopback port free at the moment of the call."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def http_call(url: str, body=None, timeout: float = 120) -> tuple:
  """(status, parsed JSON answer) of a GET (body None) or a JSON POST to url."""
  data = None if body is None else json.dumps(body).encode()
  request = urllib.request.Request(url, data=data, headers={'Content-Type': 'application/json'})
  try:
    with urllib.request.urlopen(request, timeout=timeout) as answer:
      return answer.status, json.loads(answer.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def start_server(*args: str, timeout: float = 180) -> tuple:
  """(process, base URL) of serve.py started with args on a free loopback port, once its
  /healthz answers 200."""
  port = free_port()
  proc = subprocess.Popen([sys.executable, 'serve.py', *args, f'--port={port}'], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  base = f'http://127.0.0.1:{port}'
  deadline = time.time() + timeout
  while True:
    try:
      assert http_call(base + '/healthz')[0] == 200
      return proc, base
    except (urllib.error.URLError, ConnectionError):
      assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:]
      time.sleep(0.5)
