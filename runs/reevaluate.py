"""Re-evaluates committed runs with the code of this checkout and compares the first episodes'
accuracies with their committed results: the check that a refactor kept every number.

  python runs/reevaluate.py [--episodes=40] [--attacks] [RUN_OR_JSON ...]

Without arguments, every `runs/**/eval_<split>.json`; `--attacks` adds the `*_pgd_*.json`
(PGD costs more). Each result is re-evaluated from the checkpoint it names, with its split,
seed and MC samples, in this process, writing nothing; one line per file (episodes equal,
and the first that differ; or why it cannot be: a checkpoint that is not there). Exit 1 when any
differs.
"""

import glob
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

# This checkout's package, not whichever one is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from metadrop_tf.cli import quiet  # noqa: E402  pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_integer('episodes', 40, 'Episodes per result compared (its first ones).')
flags.DEFINE_bool('attacks', False, 'Also the PGD results (eval_*_pgd_*.json).')
flags.DEFINE_integer('threads', 1, 'Intra-op threads.')
flags.DEFINE_string('out', '', 'Also write {json path: recomputed values} here (to compare two '
                    'checkouts on one machine).')


def results(paths: list) -> list:
  """The eval JSON files named by paths (a run directory: its eval_*.json) or under runs/."""
  found = []
  for path in paths or ['runs']:
    if path.endswith('.json'):
      found.append(path)
    else:
      found += glob.glob(os.path.join(path, '**', 'eval_*.json'), recursive=True)
  found = [p for p in found if not p.endswith('.partial.json')]
  if not FLAGS.attacks:
    found = [p for p in found if '_pgd_' not in os.path.basename(p)]
  return sorted(found)


def reevaluate(path: str, episodes: int) -> tuple:
  """(committed, recomputed) first `episodes` per-episode values of the result at path."""
  from metadrop_tf.evaluation import attacks  # pylint: disable=g-import-not-at-top
  from metadrop_tf.evaluation import eval_lib  # pylint: disable=g-import-not-at-top
  from metadrop_tf.evaluation import results  # pylint: disable=g-import-not-at-top
  result, config, learner, images = results.restore(path)
  attack = None
  if 'attack' in result:
    fields = {k: v for k, v in result['attack'].items() if k in attacks.Attack._fields}
    attack = attacks.Attack(**dict(fields, eps=tuple(fields['eps'])))
  n = min(episodes, result['n_episodes'])
  again = eval_lib.evaluate(learner, images, config, result.get('split', 'test'), n,
                            result['mc_samples'], progress=False, attack=attack)
  key = next(k for k in result if k.startswith('per_episode_'))
  committed, recomputed = result[key][:n], again[key][:n]
  for old, new in zip(result.get('attacked', []), again.get('attacked', [])):
    committed, recomputed = committed + old[key][:n], recomputed + new[key][:n]
  return committed, recomputed


def main(argv):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  logging.set_verbosity(logging.WARNING)  # not the notes on settings older runs predate
  differ, recomputed_all = 0, {}
  from metadrop_tf.runtime import checkpoints  # pylint: disable=g-import-not-at-top
  for path in results(argv[1:]):
    try:
      committed, recomputed = reevaluate(path, FLAGS.episodes)
    except checkpoints.CheckpointError as e:  # e.g. an intermediate checkpoint not committed
      print(f'{path}: not re-evaluated: {e}', flush=True)
      continue
    recomputed_all[path] = recomputed
    if FLAGS.out:
      with open(FLAGS.out, 'w') as f:
        json.dump(recomputed_all, f)
    same = sum(a == b for a, b in zip(committed, recomputed))
    first = next((i for i, (a, b) in enumerate(zip(committed, recomputed)) if a != b), None)
    line = f'{path}: {same}/{len(committed)} episodes equal'
    if first is not None:
      differ += 1
      line += f'; first differs at {first}: {committed[first]} != {recomputed[first]}'
    print(line, flush=True)
  sys.exit(1 if differ else 0)


if __name__ == '__main__':
  quiet.start()
  app.run(main)
