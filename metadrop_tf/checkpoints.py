"""Run directory I/O: config.json next to ckpt/, and checkpoint restore with one-line errors."""

import os

import tensorflow as tf

from metadrop_tf import config as config_lib

CONFIG_FILE = 'config.json'
CKPT_DIR = 'ckpt'


class CheckpointError(RuntimeError):
  """A missing, corrupt or mismatched run directory or checkpoint; one line naming the path."""


def write_config(workdir, config):
  """Writes <workdir>/config.json atomically."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  with open(path + '.tmp', 'w') as f:
    f.write(config.to_json())
  os.replace(path + '.tmp', path)


def read_config(workdir):
  """The Config saved in <workdir>/config.json."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise CheckpointError(f'{path} not found: --savedir={workdir} is not a training run '
                          'directory (train.py writes config.json there)')
  with open(path) as f:
    return config_lib.Config.from_json(f.read(), source=path)


def make_checkpoint(model, optimizer=None):
  """tf.train.Checkpoint of the model's variables, the optimizer and the iteration counter.

  The iteration counter is all the random state there is: episodes and noise seeds are pure
  functions of (config.seed, iteration).
  """
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
  kwargs = {'optimizer': optimizer} if optimizer is not None else {}
  return tf.train.Checkpoint(model=model, step=step, **kwargs)


def make_manager(checkpoint, workdir, max_to_keep=5):
  return tf.train.CheckpointManager(checkpoint, os.path.join(workdir, CKPT_DIR),
                                    max_to_keep=max_to_keep, checkpoint_name='ckpt')


def restore(checkpoint, workdir, path=None, required=True):
  """Restores `path` (default: the latest in <workdir>/ckpt); returns the path or None.

  Raises CheckpointError when required and nothing is there, or when the files are corrupt or
  do not match the model (e.g. a config that contradicts the saved run).
  """
  path = path or tf.train.latest_checkpoint(os.path.join(workdir, CKPT_DIR))
  if path is None:
    if required:
      raise CheckpointError(f'no checkpoint in {os.path.join(workdir, CKPT_DIR)}: '
                            'train first (train.py --savedir=...)')
    return None
  try:
    status = checkpoint.restore(path)
    status.assert_existing_objects_matched()
    if hasattr(status, 'expect_partial'):
      status.expect_partial()
  except Exception as e:  # pylint: disable=broad-except  # any failure here is the file's
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise CheckpointError(f'checkpoint {path} is corrupt or does not match this model: '
                          f'{reason[:200]}') from None
  return path
