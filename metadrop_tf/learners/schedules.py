"""What a gradient learner's meta-objective does as meta-training goes on (MAML++): the
multi-step loss's weights and derivative-order annealing."""

import tensorflow as tf

from metadrop_tf import config as config_lib

config_lib.document(
    msl_iters='MAML++ multi-step loss: the meta-objective weights the query loss after every '
              'inner step, annealed toward the last step over this many iterations; 0: off.',
    first_order_iters='MAML++ derivative-order annealing: first order for this many iterations, '
                      'then second order; 0: off.')

MSL_MIN_WEIGHT = 0.03  # the non-final steps' weights end at this / S


def multi_step_weights(iteration: tf.Tensor, n_steps: int, msl_iters: int,
                       dtype: str | tf.DType) -> tf.Tensor:
  """[S] weights of the query losses after steps 1..S (S = n_steps): 1/S each at iteration 0;
  the non-final ones decay linearly to MSL_MIN_WEIGHT / S over msl_iters iterations while the
  last grows; from msl_iters on, all weight on the last step. iteration: int tensor []."""
  s = n_steps
  it = tf.cast(iteration, dtype)
  decay = 1.0 / s / msl_iters
  low = MSL_MIN_WEIGHT / s
  early = tf.maximum(1.0 / s - it * decay, low)
  last = tf.minimum(1.0 / s + it * (s - 1) * decay, 1.0 - (s - 1) * low)
  weights = tf.concat([tf.fill([s - 1], early), [last]], axis=0)
  final = tf.one_hot(s - 1, s, dtype=dtype)
  return tf.where(it < msl_iters, weights, final)


def first_order_now(first_order: bool, first_order_iters: int,
                    iteration: tf.Tensor) -> bool | tf.Tensor:
  """Stop the inner gradients? first_order (a Python bool), or with derivative-order annealing
  (first_order_iters > 0 and an iteration tensor given) a bool tensor: iteration <
  first_order_iters."""
  if first_order or not first_order_iters or iteration is None:
    return first_order
  return iteration < first_order_iters
