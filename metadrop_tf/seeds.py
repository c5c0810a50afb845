"""Every random stream of a run, in one place. Randomness is stateless: a seed is an int32 [2]
tensor, and each use folds its own stream index into the run's seed, so a draw depends only
on (--seed, stream, index) and a resumed run, a repeated evaluation or another replica count
draws the same numbers.

  [seed, TRAIN]    fold iteration, then task: the noise of meta-training
  [seed, EVAL]     fold task index: the noise of the meta-test (and the monitoring evaluation)
  [seed, SERVE]    the noise of the exported SavedModel (fixed: repeatable predictions)
  [seed, AUGMENT]  fold meta-batch index: the augmentation of the training images
  step seed, MIXUP               the support mixup of an inner step
  step seed, MC_CHUNK, c         the noise of MC chunk c of an inner step
  task seed, ATTACK + j          the random start of the attack at radius j
The episodes themselves are drawn with NumPy from (seed, split, index) (sampling.py).
"""

import tensorflow as tf

TRAIN = 0
EVAL = 1
SERVE = 2
AUGMENT = 3
MIXUP = 5000
MC_CHUNK = 6000
ATTACK = 7000


def fold_seed(seed: tf.Tensor, *indices: int | tf.Tensor) -> tf.Tensor:
  """A new stateless seed (int32 [2]) for sub-stream `indices` of `seed`."""
  for index in indices:
    seed = tf.random.experimental.stateless_fold_in(seed, index)
  return seed


def task_seeds(seed: tf.Tensor, first_task: int | tf.Tensor, n_tasks: int) -> list:
  """Seeds (int32 [2] each) of tasks first_task .. first_task + n_tasks - 1 of stream `seed`."""
  return [fold_seed(seed, first_task + b) for b in range(n_tasks)]
