"""Exit 0 if an evaluation JSON is final for its run's newest checkpoint, else 1.

The run scripts (`runs/omniglot_1shot_robustness.sh`, `runs/learners_omniglot_5w1s/run.sh`)
call it before each `evaluate.py`, so that rerunning a script skips what is done and
continues the rest (an interrupted evaluation leaves only a `.partial.json`, which
evaluate.py itself continues).

  python runs/finished.py JSON EPISODES [EPS]

JSON is `<run>/eval_<split>[_pgd_<norm>].json`; it counts as finished when it names the
checkpoint that `<run>/ckpt/checkpoint` calls newest, holds EPISODES episodes and, if EPS (a
comma-separated list of radii) is given, was attacked at exactly those radii. Other settings
(MC samples, attack steps) are fixed by the scripts and not compared.
"""
import json
import os
import sys


def finished(path: str, episodes: int, eps: str | None = None) -> bool:
  """Whether `path` holds the final result described above."""
  if not os.path.exists(path):
    return False
  with open(path) as f:
    result = json.load(f)
  with open(os.path.join(os.path.dirname(path), 'ckpt', 'checkpoint')) as f:
    newest = f.readline().split('"')[1]
  # Names only: the json sits in its run's folder, the path it records is the one evaluate.py
  # was given, and TensorFlow may write the checkpoint file's path relative to another folder.
  return (os.path.basename(result['checkpoint']) == os.path.basename(newest)
          and result['n_episodes'] == episodes
          and (eps is None
               or result['attack']['eps'] == [float(e) for e in eps.split(',')]))


if __name__ == '__main__':
  sys.exit(0 if finished(sys.argv[1], int(sys.argv[2]), *sys.argv[3:4]) else 1)
