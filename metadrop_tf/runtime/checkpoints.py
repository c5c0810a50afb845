"""Run directory I/O: config.json next to ckpt/, and checkpoint restore with one-line errors.

A run directory never loses a checkpoint to a fault. Restoring without an explicit path takes
the newest checkpoint on disk that restores (not blindly the one `ckpt/checkpoint` names: after
a partial copy or a crash that file can name files that are gone), warns about every newer one
it skipped, and moves those aside (ckpt/unrestorable/) before training continues, so a restart
never overwrites them. A directory that holds checkpoint files none of which restores is an
error, never a silent start from iteration 0.
"""

import os
import shutil
from typing import Callable
from typing import Collection

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from metadrop_tf import config as config_lib
from metadrop_tf import errors
from metadrop_tf import files
from metadrop_tf.learners import base as learner_base
from metadrop_tf.runtime import ckpt_files

CONFIG_FILE = 'config.json'
FLAGS_FILE = 'flags.cfg'
UNRESTORABLE_DIR = 'unrestorable'
# The checkpoint file names live in ckpt_files (no TensorFlow: runs/finished.py reads them).
CKPT_DIR, CKPT_NAME = ckpt_files.CKPT_DIR, ckpt_files.CKPT_NAME
checkpoints_on_disk, missing_files = ckpt_files.checkpoints_on_disk, ckpt_files.missing_files


class CheckpointError(errors.UserError, RuntimeError):
  """A missing, corrupt or mismatched run directory or checkpoint; one line naming the path."""


def write_config(savedir: str, config: config_lib.Config) -> None:
  """Writes <savedir>/config.json atomically, and flags.cfg: the same settings as a flagfile."""
  os.makedirs(savedir, exist_ok=True)
  path = os.path.join(savedir, CONFIG_FILE)
  files.write_text(path, config.to_json())
  lines = [f'--{k}={v}\n' for k, v in sorted(config.to_dict().items())]
  files.write_text(os.path.join(savedir, FLAGS_FILE), ''.join(lines) + f'--savedir={savedir}\n')


def read_config(savedir: str) -> config_lib.Config:
  """The Config saved in <savedir>/config.json; keys added since the run was made take their
  documented defaults, each logged."""
  path = os.path.join(savedir, CONFIG_FILE)
  if not os.path.exists(path):
    raise CheckpointError(f'{path} not found: `savedir={savedir}` is not a training run '
                          'directory (train.py writes config.json there)')
  try:
    with open(path) as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise CheckpointError(f'cannot read {path}: {e}') from None
  config, defaulted = config_lib.Config.from_json(text, source=path)
  if defaulted:
    logging.info('%s predates the settings %s: using %s', path, ', '.join(defaulted),
                 ', '.join(f'{k}={getattr(config, k)!r}' for k in defaulted))
  return config


def make_checkpoint(learner: learner_base.Learner,
                    optimizer: keras.optimizers.Optimizer | None = None) -> tf.train.Checkpoint:
  """tf.train.Checkpoint of a learner's variables (learner.trackables(): its network as
  'model', its own variables as 'learner'), the optimizer and the iteration counter.

  The iteration counter is all the random state there is: episodes and noise seeds are pure
  functions of (config.seed, iteration).
  """
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
  trackables = dict(learner.trackables())
  if optimizer is not None:
    trackables['optimizer'] = optimizer
  return tf.train.Checkpoint(step=step, **trackables)


def make_manager(checkpoint: tf.train.Checkpoint, savedir: str,
                 max_to_keep: int = 5) -> tf.train.CheckpointManager:
  return tf.train.CheckpointManager(checkpoint, os.path.join(savedir, CKPT_DIR),
                                    max_to_keep=max_to_keep, checkpoint_name=CKPT_NAME)




def _describe(numbers) -> str:
  return ', '.join(f'{CKPT_NAME}-{n}' for n in sorted(numbers))


def _state_file_names(ckpt_dir):
  """The checkpoint `ckpt/checkpoint` names as latest (a path), or None."""
  try:
    return tf.train.latest_checkpoint(ckpt_dir)
  except (tf.errors.OpError, ValueError):
    return None


def _restore_one(checkpoint, path):
  """Restores path; raises CheckpointError, with .mismatch set when the files are fine but
  hold another model (any other checkpoint of the run would fail the same way)."""
  try:
    status = checkpoint.restore(path)
    status.assert_existing_objects_matched()
    if hasattr(status, 'expect_partial'):
      status.expect_partial()
  except Exception as e:  # pylint: disable=broad-except  # any failure here is the file's
    reason = errors.first_line(e)
    mismatch = isinstance(e, AssertionError) or (
        isinstance(e, ValueError) and 'incompatible' in reason)
    what = 'does not match this model' if mismatch else 'is corrupt or truncated'
    error = CheckpointError(f'checkpoint {path} {what}: {reason}')
    error.mismatch = mismatch
    raise error from None
  _check_finite(checkpoint, path)


def _check_finite(checkpoint, path):
  """Raises CheckpointError naming the first restored model variable holding NaN or inf."""
  held = [getattr(checkpoint, name, None) for name in ('model', 'learner')]
  for variable in [v for h in held if h is not None for v in h.variables]:
    if not np.all(np.isfinite(variable.numpy())):
      error = CheckpointError(
          f'checkpoint {path} holds non-finite weights (NaN or inf in {variable.path}): it was '
          'saved by a run that diverged; pass `checkpoint=<an earlier one>`')
      error.mismatch = False
      raise error


def restore(checkpoint: tf.train.Checkpoint, savedir: str, path: str | None = None,
            required: bool = True, warn: Callable = logging.warning) -> str | None:
  """Restores `path`, or else the newest checkpoint of <savedir>/ckpt that restores (see
  restore_newest); returns the path restored, or None when not required and there is none.

  Raises CheckpointError when `path` does not exist or cannot be restored, and as
  restore_newest.
  """
  if path:
    if not tf.io.gfile.exists(path + '.index'):
      on_disk = checkpoints_on_disk(os.path.dirname(path) or '.')
      listed = f'; {os.path.dirname(path)} holds {_describe(on_disk)}' if on_disk else ''
      raise CheckpointError(f'`checkpoint={path}` does not exist (no {path}.index){listed}')
    _restore_one(checkpoint, path)
    return path
  return restore_newest(checkpoint, savedir, required, warn)[0]


def restore_newest(checkpoint: tf.train.Checkpoint, savedir: str, required: bool = True,
                   warn: Callable = logging.warning) -> tuple[str | None, list]:
  """Restores the newest checkpoint of <savedir>/ckpt that restores.

  Returns (its path or None, [iterations of the newer checkpoints skipped: files missing,
  corrupt, or non-finite weights]); each skip is reported through `warn` (fmt, *args), and
  so is a `ckpt/checkpoint` state file naming another one. Raises CheckpointError when
  required and there is no checkpoint, when the checkpoints do not match the model, and when
  the directory holds checkpoint files but none restores.
  """
  ckpt_dir = os.path.join(savedir, CKPT_DIR)
  on_disk = checkpoints_on_disk(ckpt_dir)
  if not on_disk:
    if required:
      raise CheckpointError(f'no checkpoint in {ckpt_dir}: train a run in `savedir={savedir}` '
                            'first')
    return None, []
  named = _state_file_names(ckpt_dir)
  skipped, reasons = [], []
  for number in sorted(on_disk, reverse=True):
    prefix = os.path.join(ckpt_dir, f'{CKPT_NAME}-{number}')
    missing = missing_files(prefix, on_disk[number])
    try:
      if missing:
        raise CheckpointError(f'checkpoint {prefix} is incomplete: {", ".join(missing)} missing')
      _restore_one(checkpoint, prefix)
    except CheckpointError as e:
      if getattr(e, 'mismatch', False):
        raise
      skipped.append(number)
      reasons.append(str(e))
      warn('skipping %s', e)
      continue
    if named and os.path.basename(named) != os.path.basename(prefix):
      warn('%s/checkpoint names %s, but the newest checkpoint that restores is %s',
           ckpt_dir, os.path.basename(named), os.path.basename(prefix))
    return prefix, skipped
  if len(reasons) == 1:
    raise CheckpointError(reasons[0])
  raise CheckpointError(
      f'{ckpt_dir} holds {_describe(on_disk)} but none can be restored (newest: {reasons[0]}); '
      'restore the directory from a backup, or move it aside and train anew')


def set_aside(savedir: str, numbers: Collection[int]) -> str:
  """Moves the files of checkpoints `numbers` to <savedir>/ckpt/unrestorable/ (kept, never
  overwritten by a resumed run) and rewrites ckpt/checkpoint to list the ones left."""
  ckpt_dir = os.path.join(savedir, CKPT_DIR)
  aside = os.path.join(ckpt_dir, UNRESTORABLE_DIR)
  on_disk = checkpoints_on_disk(ckpt_dir)
  os.makedirs(aside, exist_ok=True)
  for number in numbers:
    for name in on_disk.get(number, []):
      target = os.path.join(aside, name)
      while os.path.exists(target):
        target += '.old'
      shutil.move(os.path.join(ckpt_dir, name), target)
  left = sorted(set(on_disk) - set(numbers))
  if left:
    paths = [f'{CKPT_NAME}-{n}' for n in left]
    tf.compat.v1.train.update_checkpoint_state(ckpt_dir, paths[-1], paths)
  elif os.path.exists(os.path.join(ckpt_dir, 'checkpoint')):
    os.remove(os.path.join(ckpt_dir, 'checkpoint'))
  return aside
