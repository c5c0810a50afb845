"""Atomic file writes: a reader sees the old file or the new one, never half of one. No TF."""

import json
import os


def write_text(path: str, text: str) -> str:
  """Writes `text` to `path` through a temporary file and a rename; returns path."""
  with open(path + '.tmp', 'w') as f:
    f.write(text)
  os.replace(path + '.tmp', path)
  return path


def write_json(path: str, value) -> str:
  """Writes `value` as indented JSON to `path` atomically (write_text); returns path."""
  return write_text(path, json.dumps(value, indent=1))
