"""Sinusoid regression tasks (Finn et al. 2017, section 5.1), generated, never downloaded.

Task i of a split is y = A sin(x - p) with amplitude A ~ U[0.1, 5.0] and phase p ~ U[0, pi];
its K support and Q query points have x ~ U[-5, 5]. Everything about task i depends only on
(seed, split, i), like the image episodes (episodes/sampling.py, EpisodeSampler), so a resumed
run or a repeated evaluation sees the same tasks. NumPy only: sampling.make_dataset streams it.
"""

import math

import numpy as np

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)
SPLIT_IDS = {'train': 0, 'val': 1, 'test': 2}  # as data.SPLIT_IDS


def curve(amplitude: float | np.ndarray, phase: float | np.ndarray,
          x: np.ndarray) -> np.ndarray:
  """A sin(x - p) at x (any shape)."""
  return amplitude * np.sin(np.asarray(x) - phase)


class SinusoidSampler:
  """Draws sinusoid tasks of one split; task i depends only on (seed, split, i).

  Args:
    shot: K, support points per task. query: Q, query points per task.
    seed: the run's seed. split: train, val or test (each its own stream of tasks).
  """

  generated = True  # sampling.make_dataset: float inputs and targets, no image shard

  def __init__(self, shot: int, query: int, seed: int, split: str = 'train'):
    self.shot, self.query = shot, query
    self.seed, self.split_id = seed, SPLIT_IDS[split]

  def _rng(self, index):
    return np.random.default_rng([self.seed, self.split_id, index])

  def task_parameters(self, index: int) -> tuple:
    """(amplitude A, phase p) of task `index`."""
    rng = self._rng(index)
    return rng.uniform(*AMPLITUDE), rng.uniform(*PHASE)

  def task(self, index: int) -> tuple:
    """float32 support_x [K, 1], support_y [K, 1], query_x [Q, 1], query_y [Q, 1]."""
    rng = self._rng(index)
    amplitude, phase = rng.uniform(*AMPLITUDE), rng.uniform(*PHASE)
    x = rng.uniform(*X_RANGE, size=(self.shot + self.query, 1))
    y = curve(amplitude, phase, x)
    x, y = x.astype(np.float32), y.astype(np.float32)
    return x[:self.shot], y[:self.shot], x[self.shot:], y[self.shot:]

  def meta_batch(self, index: int, size: int) -> tuple:
    """The four arrays of tasks index*B .. index*B+B-1, stacked: [B, K, 1], ..., [B, Q, 1]."""
    tasks = [self.task(index * size + b) for b in range(size)]
    return tuple(np.stack([t[part] for t in tasks]) for part in range(4))
