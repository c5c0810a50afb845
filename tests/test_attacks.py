"""Tests of the PGD attacks: the ball and pixel range hold, one step is FGSM / the normalized
gradient step, the L1 projection is exact, and the attack raises the loss of a tiny model."""

import numpy as np
import pytest
import tensorflow as tf

import helpers
from metadrop_tf import objectives
from metadrop_tf.evaluation import attacks

SEED = tf.constant([3, 4], tf.int32)


def _l1_projection_by_bisection(v, eps, iters=200):
  """Reference: w = sign(v) max(|v| - t, 0) with t found by bisection on sum = eps."""
  if np.abs(v).sum() <= eps:
    return v
  low, high = 0.0, np.abs(v).max()
  for _ in range(iters):
    t = (low + high) / 2
    if np.maximum(np.abs(v) - t, 0).sum() > eps:
      low = t
    else:
      high = t
  return np.sign(v) * np.maximum(np.abs(v) - high, 0)


def test_l1_projection_is_exact():
  rng = np.random.default_rng(0)
  v = rng.normal(size=(20, 37)) * rng.uniform(0.1, 3, size=(20, 1))
  for eps in (0.5, 3.0, 1e3):
    got = attacks.project_l1(tf.constant(v), eps).numpy()
    expected = np.stack([_l1_projection_by_bisection(row, eps) for row in v])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    assert np.all(np.abs(got).sum(axis=1) <= eps + 1e-9)


def _quadratic_loss(target):
  return lambda images: tf.reduce_sum((images - target) ** 2)


@pytest.mark.parametrize('norm, eps', [('linf', 0.05), ('l2', 0.7), ('l1', 4.0)])
@pytest.mark.parametrize('random_start', [False, True])
def test_the_perturbation_stays_in_the_ball_and_the_pixel_range(norm, eps, random_start):
  rng = np.random.default_rng(1)
  x = tf.constant(rng.random((3, 8, 8, 1)))
  target = tf.constant(rng.normal(size=(3, 8, 8, 1)) * 3)  # pulls pixels outside [0, 1]
  attack = attacks.Attack(norm=norm, steps=7, step_size=eps / 2, random_start=random_start,
                          l1_sparsity=0.1)
  adversarial = attacks.pgd(lambda im: -_quadratic_loss(target)(im), x, attack, eps, SEED)
  delta = (adversarial - x).numpy().reshape(3, -1)
  size = {'linf': np.abs(delta).max(axis=1), 'l2': np.linalg.norm(delta, axis=1),
          'l1': np.abs(delta).sum(axis=1)}[norm]
  assert np.all(size <= eps + 1e-9) and np.any(size > 0.5 * eps)
  assert adversarial.numpy().min() >= 0 and adversarial.numpy().max() <= 1


def test_one_step_is_fgsm_and_the_normalized_gradient_step():
  rng = np.random.default_rng(2)
  x = tf.constant(rng.uniform(0.2, 0.8, (2, 4, 4, 1)))
  target = tf.constant(rng.random((2, 4, 4, 1)))
  loss = _quadratic_loss(target)
  grad = (2 * (x - target)).numpy()
  eps = 0.1
  linf = attacks.pgd(loss, x, attacks.Attack('linf', steps=1, step_size=eps), eps)
  np.testing.assert_allclose(linf, np.clip(x + eps * np.sign(grad), 0, 1), rtol=1e-12)
  l2 = attacks.pgd(loss, x, attacks.Attack('l2', steps=1, step_size=eps), eps)
  unit = grad / np.linalg.norm(grad.reshape(2, -1), axis=1)[:, None, None, None]
  np.testing.assert_allclose(l2, np.clip(x + eps * unit, 0, 1), rtol=1e-12)
  l1 = attacks.pgd(loss, x, attacks.Attack('l1', steps=1, step_size=eps, l1_sparsity=0.1), eps)
  moved = np.abs((l1 - x).numpy().reshape(2, -1))
  top = np.argmax(np.abs(grad.reshape(2, -1)), axis=1)
  np.testing.assert_allclose(moved[np.arange(2), top], eps, rtol=1e-9)
  assert np.all((moved > 0).sum(axis=1) == 1)


def test_an_l1_step_skips_pixels_that_cannot_move_and_spreads_over_its_length():
  # Image 0: the largest gradient pushes a pixel at 1 upward, so the step takes the next one.
  # Image 1: all pixels at 0 and pushed up; a step of L1 length 3.5 moves ceil(3.5) = 4 pixels
  # by 3.5 / 4 (with 1% of 16 coordinates it would move one pixel by 3.5, clipped to 1).
  x = np.zeros((2, 4, 4, 1))
  x[0, 0, 0, 0] = 1.0
  grad = np.zeros((2, 4, 4, 1))
  grad[0, 0, 0, 0], grad[0, 1, 1, 0], grad[0, 2, 2, 0] = 5.0, 3.0, -1.0
  grad[1] = np.arange(1, 17).reshape(4, 4, 1)
  step = attacks.direction(tf.constant(grad), 'l1', 0.01, tf.constant(x), step=0.5).numpy()
  expected = np.zeros_like(grad[0])
  expected[1, 1, 0] = 1.0
  np.testing.assert_array_equal(step[0], expected)
  spread = attacks.direction(tf.constant(grad), 'l1', 0.01, tf.constant(x), step=3.5).numpy()
  np.testing.assert_allclose(np.sort(spread[1].ravel())[-4:], 0.25)
  assert np.count_nonzero(spread[1]) == 4
  loss = lambda images: tf.reduce_sum(images * tf.constant(grad))
  adversarial = attacks.pgd(loss, tf.constant(x), attacks.Attack('l1', steps=1, step_size=3.5),
                            3.5)
  np.testing.assert_allclose(np.abs(adversarial.numpy() - x)[1].sum(), 3.5, rtol=1e-12)


def test_the_attack_raises_the_query_loss_of_an_adapted_model():
  learner = helpers.tiny_learner('maml', channels=4)
  episode = helpers.random_episode(metabatch=1, query=3)
  state = learner.adapt(episode.support_x[0], episode.support_y[0], SEED)[-1]
  loss = lambda images: objectives.cross_entropy(learner.predict(state, images),
                                                   episode.query_y[0])
  clean = float(loss(episode.query_x[0]))
  for norm, eps in (('linf', 0.03), ('l2', 0.5), ('l1', 5.0)):
    attacked = attacks.pgd(loss, episode.query_x[0], attacks.Attack(norm, steps=5), eps)
    assert float(loss(attacked)) > clean, norm
