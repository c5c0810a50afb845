"""Exit 0 if an evaluation JSON is final for its run's newest checkpoint, else 1.

The run scripts (`runs/omniglot_1shot_robustness.sh`, `runs/learners_omniglot_5w1s/run.sh`)
call it before each `evaluate.py`, so that rerunning a script skips what is done and
continues the rest (an interrupted evaluation leaves only a `.partial.json`, which
evaluate.py itself continues).

  python runs/finished.py JSON EPISODES [EPS]

JSON is `<run>/eval_<split>[_pgd_<norm>].json`; it counts as finished when it names the newest
checkpoint in `<run>/ckpt` (the highest ckpt-N on disk, the one evaluate.py restores, not what
the `ckpt/checkpoint` state file says), holds EPISODES episodes and, if EPS (a comma-separated
list of radii) is given, was attacked at exactly those radii. Other settings (MC samples,
attack steps) are fixed by the scripts and not compared.
"""
import json
import os
import sys

# Run from a clone without installing the package: the repository root holds metadrop_tf.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from metadrop_tf.runtime import ckpt_files  # noqa: E402  (after the path; no TensorFlow)


def finished(path: str, episodes: int, eps: str | None = None) -> bool:
  """Whether `path` holds the final result described above."""
  if not os.path.exists(path):
    return False
  with open(path) as f:
    result = json.load(f)
  on_disk = ckpt_files.checkpoints_on_disk(os.path.join(os.path.dirname(path),
                                                         ckpt_files.CKPT_DIR))
  # By name: the path the json records is the one evaluate.py was given (relative or not).
  return (bool(on_disk)
          and os.path.basename(result['checkpoint']) == f'{ckpt_files.CKPT_NAME}-{max(on_disk)}'
          and result['n_episodes'] == episodes
          and (eps is None
               or result['attack']['eps'] == [float(e) for e in eps.split(',')]))


if __name__ == '__main__':
  sys.exit(0 if finished(sys.argv[1], int(sys.argv[2]), *sys.argv[3:4]) else 1)
