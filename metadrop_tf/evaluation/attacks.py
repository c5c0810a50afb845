"""White-box adversarial attacks on the query of an adapted model: projected gradient descent
(ascent on the loss) in the L-inf, L2 or L1 ball, pixels kept in [0, 1].

Every norm is per image: images x [n, H, W, C], a perturbation delta of x's shape with
||delta_i|| <= eps for each image i. Step directions: L-inf the sign of the gradient (FGSM's
step), L2 the gradient over its norm, L1 a sparse step: the sign of the gradient on the
coordinates with the largest |gradient| among those that can still move that way (a pixel at 1
cannot rise, one at 0 cannot fall), scaled to L1 norm 1. An L1 step moves the `l1_sparsity`
fraction of the coordinates, and at least as many as its length: no pixel moves by more than 1,
so a step of L1 length 25 spread over 8 pixels would lose most of itself to the pixel range.
Projections are exact (L1: the sort-based projection onto the simplex of Duchi et al. 2008).
"""

import math
from typing import Callable
from typing import NamedTuple

import tensorflow as tf

NORMS = ('linf', 'l2', 'l1')


class Attack(NamedTuple):
  """PGD settings. step_size 0 means 2.5 * eps / steps (Madry et al.'s choice)."""
  norm: str = 'linf'
  eps: tuple = (0.03,)
  steps: int = 10
  step_size: float = 0.0
  random_start: bool = False
  l1_sparsity: float = 0.01  # fraction of coordinates an L1 step moves (at least its length)

  def step_for(self, eps: float) -> float:
    return self.step_size or 2.5 * eps / self.steps


def _flat(x):
  return tf.reshape(x, [tf.shape(x)[0], -1])


def project_l1(v: tf.Tensor, eps: float) -> tf.Tensor:
  """Exact Euclidean projection of each row of v [n, d] onto {||w||_1 <= eps} (sort-based)."""
  magnitude = tf.abs(v)
  inside = tf.reduce_sum(magnitude, axis=1, keepdims=True) <= eps
  sorted_desc = tf.sort(magnitude, axis=1, direction='DESCENDING')
  cumulative = tf.cumsum(sorted_desc, axis=1)
  index = tf.cast(tf.range(1, tf.shape(v)[1] + 1), v.dtype)[None, :]
  positive = sorted_desc - (cumulative - eps) / index > 0
  rho = tf.reduce_sum(tf.cast(positive, tf.int32), axis=1, keepdims=True)  # >= 1
  theta = (tf.gather(cumulative, rho - 1, batch_dims=1) - eps) / tf.cast(rho, v.dtype)
  projected = tf.sign(v) * tf.maximum(magnitude - theta, 0)
  return tf.where(inside, v, projected)


def project(delta: tf.Tensor, norm: str, eps: float) -> tf.Tensor:
  """delta [n, ...] with each image's perturbation projected onto the eps-ball of `norm`."""
  if norm == 'linf':
    return tf.clip_by_value(delta, -eps, eps)
  flat = _flat(delta)
  if norm == 'l2':
    length = tf.norm(flat, axis=1, keepdims=True)
    flat = flat * tf.minimum(1.0, eps / tf.maximum(length, 1e-12))
  elif norm == 'l1':
    flat = project_l1(flat, tf.cast(eps, delta.dtype))
  else:
    raise ValueError(f'unknown norm {norm!r}; choose one of {NORMS}')
  return tf.reshape(flat, tf.shape(delta))


def direction(grad: tf.Tensor, norm: str, l1_sparsity: float = 0.01,
              images: tf.Tensor | None = None, step: float = 0.0) -> tf.Tensor:
  """The steepest-ascent step of unit `norm` for gradient grad [n, ...] (per image).

  L1 only: `images` (grad's shape, in [0, 1]) are the current attacked images, whose pixels at
  0 or 1 cannot move further out; the step moves max(l1_sparsity * d, ceil(step)) of the d
  coordinates of an image (fewer if fewer can move), `step` being the L1 length it will take.
  """
  if norm == 'linf':
    return tf.sign(grad)
  flat = _flat(grad)
  if norm == 'l2':
    flat = flat / tf.maximum(tf.norm(flat, axis=1, keepdims=True), 1e-12)
  elif norm == 'l1':
    score = tf.abs(flat)
    if images is not None:
      pixels = _flat(images)
      movable = tf.logical_or(tf.logical_and(flat > 0, pixels < 1),
                              tf.logical_and(flat < 0, pixels > 0))
      score = tf.where(movable, score, tf.zeros_like(score))
    d = tf.shape(flat)[1]
    k = tf.maximum(1, tf.cast(tf.cast(d, tf.float32) * l1_sparsity, tf.int32))
    k = tf.minimum(d, tf.maximum(k, int(math.ceil(step))))
    threshold = tf.math.top_k(score, k).values[:, -1:]
    mask = tf.cast(tf.logical_and(score >= threshold, score > 0), flat.dtype)
    flat = tf.sign(flat) * mask / tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1)
  else:
    raise ValueError(f'unknown norm {norm!r}; choose one of {NORMS}')
  return tf.reshape(flat, tf.shape(grad))


def pgd(loss_fn: Callable, x: tf.Tensor, attack: Attack, eps: float,
        seed: tf.Tensor | None = None) -> tf.Tensor:
  """Adversarial images x + delta ([n, H, W, C] in [0, 1]) that raise loss_fn(images), a
  scalar: `attack.steps` steps of attack.step_for(eps) along `direction`, each followed by
  the projection onto the ball and the pixel range. random_start needs seed (int32 [2])."""
  delta = tf.zeros_like(x)
  if attack.random_start:
    delta = project(tf.random.stateless_uniform(tf.shape(x), seed, -eps, eps, x.dtype),
                    attack.norm, eps)
    delta = tf.clip_by_value(x + delta, 0, 1) - x
  step = attack.step_for(eps)
  for _ in range(attack.steps):
    with tf.GradientTape() as tape:
      tape.watch(delta)
      loss = loss_fn(x + delta)
    grad = tape.gradient(loss, delta)
    delta = delta + step * direction(grad, attack.norm, attack.l1_sparsity, x + delta, step)
    delta = project(delta, attack.norm, eps)
    delta = tf.clip_by_value(x + delta, 0, 1) - x
  return tf.stop_gradient(x + delta)
