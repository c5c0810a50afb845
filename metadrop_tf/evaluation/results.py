"""Result files of evaluations (eval_<split>[...].json): where a new one goes so that none is
lost, the commit that computed it, and the restored model and data that computed one."""

import json
import os
import subprocess
from typing import NamedTuple

from absl import logging

from metadrop_tf import config as config_lib
from metadrop_tf import learners
from metadrop_tf.episodes import data
from metadrop_tf.learners import base
from metadrop_tf.runtime import checkpoints


def code_commit() -> str | None:
  """The git commit of this package's checkout ('+' appended when it has uncommitted changes
  to tracked files), or None outside a git checkout."""
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package's root
  try:
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=here, capture_output=True,
                          text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no', '--', '.'],
                           cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return head + ('+' if dirty else '')


def _read_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def place_result(path: str, result: dict, overwrite: bool = False) -> str:
  """Where `result` goes so that no earlier result at `path` (eval_<split>[...].json) is lost.

  - An earlier result of a checkpoint of another iteration S (its `checkpoint_step`) moves to
    <name>.step<S>.json (the history of a run that is evaluated as it trains); `path` takes
    the new result.
  - An earlier result of the same checkpoint with more episodes stays; the new one goes beside
    it, to <name>.<N>ep.json, unless `overwrite`.
  Returns the path to write the new result to.
  """
  old = _read_json(path)
  if not old:
    return path
  stem = path[:-len('.json')]
  old_step = old.get('checkpoint_step')
  if old_step is not None and old_step != result.get('checkpoint_step'):
    os.replace(path, f'{stem}.step{old_step}.json')
    logging.info('kept the result of iteration %s as %s.step%s.json', old_step, stem, old_step)
    return path
  if old.get('n_episodes', 0) > result['n_episodes'] and not overwrite:
    beside = f"{stem}.{result['n_episodes']}ep.json"
    logging.info('%s holds %d episodes: wrote this %d-episode result beside it '
                 '(overwrite replaces it)', path, old['n_episodes'], result['n_episodes'])
    return beside
  return path


class Restored(NamedTuple):
  """What computed a result: the result itself (its JSON), the run's Config with the
  result's seed, the learner with the result's checkpoint restored, and the result's split
  (data.load_splits)."""
  result: dict
  config: config_lib.Config
  learner: base.Learner
  images: object  # the split's images (None for a generated dataset)


def restore(path: str) -> Restored:
  """Rebuilds the learner of the result at `path` (<savedir>/eval_*.json) from its run's
  config.json and restores the checkpoint the result names (from <savedir>/ckpt, wherever the
  run was when it was evaluated). Raises CheckpointError when that checkpoint is missing."""
  with open(path) as f:
    result = json.load(f)
  savedir = os.path.dirname(path)
  config = checkpoints.read_config(savedir)
  config = config.replace(seed=result.get('seed', config.seed))
  learner = learners.build(config)
  ckpt = checkpoints.make_checkpoint(learner)
  name = os.path.basename(result['checkpoint'])
  checkpoints.restore(ckpt, savedir, os.path.join(savedir, checkpoints.CKPT_DIR, name))
  split = result.get('split', 'test')
  return Restored(result, config, learner, data.load_splits(config, (split,))[split])
