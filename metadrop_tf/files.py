"""Atomic file writes: a reader sees the old file or the new one, never half of one. No TF.

Every file the package and data/ write whole (config.json, results, manifests, shards) goes
through `atomic`: written under a temporary name beside its target, renamed over it when done,
removed when the writer fails, so an interrupted write leaves the previous file intact.
"""

import contextlib
import json
import os
from typing import Iterator

import numpy as np


@contextlib.contextmanager
def atomic(path: str) -> Iterator[str]:
  """Yields a temporary path beside `path` with the same extension ('train.npz' ->
  'train.tmp.npz', so numpy keeps the name); the block writes it, and it replaces `path` when
  the block ends. If the block raises, the temporary file is removed and `path` is untouched."""
  root, ext = os.path.splitext(path)
  tmp = f'{root}.tmp{ext}'
  try:
    yield tmp
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  os.replace(tmp, path)


@contextlib.contextmanager
def uint8_array(path: str, shape: tuple) -> Iterator[np.ndarray]:
  """A uint8 .npy memmap of `shape`, filled by the block (never whole in memory) and moved to
  `path` atomically when the block ends."""
  with atomic(path) as tmp:
    array = np.lib.format.open_memmap(tmp, mode='w+', dtype=np.uint8, shape=shape)
    yield array
    array.flush()
    del array


def write_text(path: str, text: str) -> str:
  """Writes `text` to `path` atomically; returns path."""
  with atomic(path) as tmp:
    with open(tmp, 'w') as f:
      f.write(text)
  return path


def write_json(path: str, value: object) -> str:
  """Writes `value` as indented JSON to `path` atomically (write_text); returns path."""
  return write_text(path, json.dumps(value, indent=1))
