"""manifest.json of a shard folder: the size and sha256 of every shard data/prepare.py wrote,
so a half-copied or damaged dataset is caught when it is loaded, not hours into a run. No TF."""

import hashlib
import json
import os
from typing import Iterable

from metadrop_tf import files

MANIFEST_FILE = 'manifest.json'
CHUNK = 1 << 20


def sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(CHUNK), b''):
      digest.update(chunk)
  return digest.hexdigest()


def write(folder: str, names: Iterable[str]) -> str:
  """Records size and sha256 of the files `names` in folder/manifest.json; returns its path."""
  entries = {name: {'bytes': os.path.getsize(os.path.join(folder, name)),
                    'sha256': sha256(os.path.join(folder, name))} for name in sorted(names)}
  path = os.path.join(folder, MANIFEST_FILE)
  files.write_json(path, {'files': entries})
  return path


def check(path: str) -> str | None:
  """None if `path` matches its folder's manifest (or there is none / it does not list the
  file), else a one-line reason: the size or the sha256 differs, or the manifest is unreadable."""
  folder, name = os.path.split(path)
  manifest_path = os.path.join(folder, MANIFEST_FILE)
  if not os.path.exists(manifest_path):
    return None
  try:
    with open(manifest_path) as f:
      entry = json.load(f)['files'].get(name)
  except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
    return f'{manifest_path} cannot be read ({e})'
  if entry is None:
    return None
  size = os.path.getsize(path)
  if size != entry.get('bytes'):
    return (f'{path} has {size} bytes, {manifest_path} says {entry.get("bytes")}: a partial '
            'copy or a damaged file')
  if sha256(path) != entry.get('sha256'):
    return f'{path} does not match the sha256 in {manifest_path}: the file is damaged'
  return None
