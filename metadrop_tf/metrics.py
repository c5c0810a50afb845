"""Accuracy summaries meta-learning papers report, and windowed averages for training logs."""

import collections
from typing import Mapping
from typing import Sequence

import numpy as np


def mean_ci95(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
  """(mean, 1.96 * std / sqrt(n)) of per-episode values, the protocol of Table 1."""
  values = np.asarray(values, dtype=np.float64)
  if values.size == 0:
    raise ValueError('mean_ci95 needs at least one value')
  return float(values.mean()), float(1.96 * values.std() / np.sqrt(values.size))


class WindowAverage:
  """Averages dicts of scalars over the steps since the last `result()`; each key over the
  steps that reported it (a metric may be computed only every few steps)."""

  def __init__(self):
    self._sums = collections.defaultdict(float)
    self._counts = collections.defaultdict(int)
    self._steps = 0

  def add(self, values: Mapping[str, float]) -> None:
    for key, value in values.items():
      self._sums[key] += float(value)
      self._counts[key] += 1
    self._steps += 1

  def __len__(self):
    return self._steps

  def result(self) -> dict:
    """Averages since the last call, then starts a new window."""
    out = {k: self._sums[k] / n for k, n in self._counts.items()}
    self._sums.clear()
    self._counts.clear()
    self._steps = 0
    return out
