"""The names of a run's checkpoint files, without TensorFlow: scripts that only decide what is
on disk (runs/finished.py) start in a fraction of a second.

A run keeps its checkpoints in <savedir>/ckpt as ckpt-N.index and ckpt-N.data-i-of-n.
"""

import os
import re
from typing import Collection

CKPT_DIR = 'ckpt'
CKPT_NAME = 'ckpt'
_CKPT_FILE = re.compile(rf'^{CKPT_NAME}-(\d+)\.(index|data-\d+-of-(\d+))$')


def checkpoints_on_disk(ckpt_dir: str) -> dict[int, list[str]]:
  """{iteration: [file names]} of every ckpt-N.* file in ckpt_dir (complete or not)."""
  found = {}
  if os.path.isdir(ckpt_dir):
    for name in os.listdir(ckpt_dir):
      match = _CKPT_FILE.match(name)
      if match:
        found.setdefault(int(match.group(1)), []).append(name)
  return found


def missing_files(prefix: str, names: Collection[str]) -> list[str]:
  """Files checkpoint `prefix` needs that are not among `names` (index and every data shard)."""
  base = os.path.basename(prefix)
  needed = {f'{base}.index'}
  for name in names:
    match = _CKPT_FILE.match(name)
    if match and match.group(3):
      shards = int(match.group(3))
      needed |= {f'{base}.data-{i:05d}-of-{shards:05d}' for i in range(shards)}
  if not any(n.startswith(f'{base}.data-') for n in names):
    needed.add(f'{base}.data-00000-of-00001')
  return sorted(needed - set(names))
