"""Tests of the pure forward math: batch norm, multiplicative noise, fused conv block, head."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from metadrop_tf.nets import layers
from metadrop_tf.nets import noise as noise_lib

SEED = tf.constant([3, 4], tf.int32)


def _random(shape, seed=0):
  return tf.constant(np.random.default_rng(seed).normal(size=shape))


def test_batch_norm_uses_the_batch_it_is_given():
  x = _random((5, 4, 4, 3))
  offset = tf.constant([0.5, -1.0, 2.0], tf.float64)
  out = layers.batch_norm(x, offset)
  # A shifted batch normalizes to the same features (the statistics of that batch).
  np.testing.assert_allclose(layers.batch_norm(x + 7.0, offset), out, atol=1e-10)
  centered = out - offset
  np.testing.assert_allclose(tf.reduce_mean(centered, [0, 1, 2]), 0.0, atol=1e-12)
  var_x = tf.reduce_mean(tf.square(x - tf.reduce_mean(x, [0, 1, 2])), [0, 1, 2])
  np.testing.assert_allclose(tf.reduce_mean(tf.square(centered), [0, 1, 2]),
                             var_x / (var_x + layers.BN_EPSILON), rtol=1e-10)


def test_batch_norm_groups_keep_their_own_statistics():
  a, b = _random((4, 3, 3, 2), 1), 5.0 + 2.0 * _random((4, 3, 3, 2), 2)
  offset = tf.zeros(2, tf.float64)
  grouped = layers.batch_norm(tf.concat([a, b], 0), offset, groups=2)
  separate = tf.concat([layers.batch_norm(a, offset), layers.batch_norm(b, offset)], 0)
  np.testing.assert_allclose(grouped, separate, atol=1e-12)
  pooled = layers.batch_norm(tf.concat([a, b], 0), offset)
  assert np.abs(pooled - grouped).max() > 0.1


def test_deterministic_noise_still_multiplies_by_softplus_alpha():
  mu, alpha = _random((2, 3), 1), _random((2, 3), 2)
  out = noise_lib.multiplicative_noise(mu, alpha, sample=False)
  np.testing.assert_allclose(out, mu * np.log1p(np.exp(alpha.numpy())), rtol=1e-12)


@pytest.mark.parametrize('sampler', sorted(noise_lib.SAMPLERS))
def test_sampled_noise_is_seeded(sampler):
  sampler = noise_lib.SAMPLERS[sampler]
  mu, alpha = _random((50,), 1), _random((50,), 2)
  first = noise_lib.multiplicative_noise(mu, alpha, True, SEED, sampler)
  np.testing.assert_array_equal(
      first, noise_lib.multiplicative_noise(mu, alpha, True, SEED, sampler))
  other = noise_lib.multiplicative_noise(mu, alpha, True, tf.constant([3, 5]), sampler)
  assert np.abs(first - other).max() > 1e-3
  # softplus > 0: the noise never flips the sign of mu.
  assert np.all(np.sign(first) == np.sign(mu))


@pytest.mark.parametrize('sampler', sorted(noise_lib.SAMPLERS))
@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_samplers_draw_independent_standard_normals(sampler, dtype):
  shape = (3, 333, 1001)  # an odd number of elements: Box-Muller drops half a pair
  z = noise_lib.SAMPLERS[sampler](tf.constant(shape), SEED, dtype)
  assert z.shape == shape and z.dtype == dtype
  z = z.numpy().astype(np.float64).ravel()
  n = z.size
  assert abs(z.mean()) < 5 / np.sqrt(n) and abs(z.var() - 1) < 5 * np.sqrt(2 / n)
  quantiles = np.quantile(z, [0.001, 0.025, 0.1587, 0.5, 0.8413, 0.975, 0.999])
  np.testing.assert_allclose(quantiles, [-3.0902, -1.96, -1.0, 0.0, 1.0, 1.96, 3.0902],
                             atol=0.02)
  assert abs(np.mean(z ** 4) - 3) < 0.05  # normal kurtosis
  # Box-Muller's two members of a pair (i, i + half) are independent, not just uncorrelated.
  half = (n + 1) // 2
  a, b = z[:n - half], z[half:]
  assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(n / 2)
  assert abs(np.corrcoef(a ** 2, b ** 2)[0, 1]) < 5 / np.sqrt(n / 2)


def test_tfp_sampler_reproduces_a_tfp_normal_around_alpha():
  """Runs trained with the tfp sampler keep their noise stream (z ~ Normal(alpha, 1))."""
  alpha = _random((4, 6), 3)
  expected = tfp.distributions.Normal(alpha, tf.ones_like(alpha)).sample(seed=SEED)
  mu = tf.ones_like(alpha)
  np.testing.assert_allclose(
      noise_lib.multiplicative_noise(mu, alpha, True, SEED, noise_lib.tfp_normal),
      tf.nn.softplus(expected), rtol=1e-12)


def test_conv_block_follows_the_spec_order():
  x = _random((3, 6, 6, 2))
  tk, pk = _random((3, 3, 2, 4), 1), _random((3, 3, 2, 4), 2)
  tb, pb = _random((4,), 3), _random((4,), 4)
  offset = _random((4,), 5)
  out = layers.conv_block(x, tk, tb, offset, pk, pb, sample=False)
  mu = tf.nn.conv2d(x, tk, 1, 'SAME') + tb
  alpha = tf.nn.conv2d(x, pk, 1, 'SAME') + pb
  h = tf.nn.relu(layers.batch_norm(mu * tf.nn.softplus(alpha), offset))
  np.testing.assert_allclose(out, tf.nn.max_pool2d(h, 2, 2, 'VALID'), rtol=1e-10, atol=1e-12)
  assert out.shape == (3, 3, 3, 4)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_conv_block_copies_equal_separate_blocks_on_their_slices_of_the_noise(dtype):
  """Copies sit on the channel axis while the noise is drawn: copy m gets channels
  [m*C, (m+1)*C) of one draw, and its output rows must be conv_block of that noise alone."""
  n, size, c, copies = 3, 6, 2, 4
  x = tf.cast(_random((n, size, size, 1), 1), dtype)
  weights = [tf.cast(_random(shape, s), dtype) for s, shape in enumerate(
      [(3, 3, 1, c), (c,), (c,), (3, 3, 1, c), (c,)], 2)]
  eps = tf.cast(_random((n, size, size, copies * c), 9), dtype)
  out = layers.conv_block_copies(x, *weights, copies=copies, sample=True, seed=SEED,
                                 sampler=lambda shape, seed, dtype: tf.reshape(eps, shape))
  assert out.shape == (copies * n, size // 2, size // 2, c)
  tolerance = 1e-5 if dtype == tf.float32 else 1e-12
  for m in range(copies):
    alone = layers.conv_block(x, *weights, sample=True, seed=SEED,
                              sampler=lambda shape, seed, dtype: eps[..., m * c:(m + 1) * c])
    np.testing.assert_allclose(out[m * n:(m + 1) * n], alone, rtol=tolerance, atol=tolerance)
  np.testing.assert_array_equal(
      layers.conv_block_copies(x, *weights, copies=1, sample=True, seed=SEED),
      layers.conv_block(x, *weights, sample=True, seed=SEED))


def test_conv_block_without_phi_has_no_noise():
  x = _random((3, 4, 4, 1))
  tk, tb, offset = _random((3, 3, 1, 2), 1), tf.zeros(2, tf.float64), tf.zeros(2, tf.float64)
  a = layers.conv_block(x, tk, tb, offset, sample=True, seed=SEED)
  b = layers.conv_block(x, tk, tb, offset, sample=True, seed=tf.constant([9, 9]))
  np.testing.assert_array_equal(a, b)


def test_bfloat16_compute_keeps_the_input_dtype_and_is_close():
  x, k, b = _random((2, 5, 5, 3)), _random((3, 3, 3, 4), 1), _random((4,), 2)
  x32, k32, b32 = (tf.cast(t, tf.float32) for t in (x, k, b))
  low = layers.conv2d(x32, k32, b32, compute_dtype=tf.bfloat16)
  assert low.dtype == tf.float32
  np.testing.assert_allclose(low, layers.conv2d(x32, k32, b32), rtol=0.05, atol=0.1)


def test_head_noise_is_one_column_scaled_by_softplus():
  feats = _random((4, 5))
  w, b = _random((5, 3), 1), _random((3,), 2)
  mu = feats @ w + b
  np.testing.assert_allclose(layers.noisy_head(feats, w, b, sample=False), mu)
  quiet = layers.noisy_head(feats, w, b, tf.zeros((5, 1), tf.float64),
                            tf.constant([-40.0], tf.float64), sample=True, seed=SEED)
  np.testing.assert_allclose(quiet, mu, atol=1e-12)
  loud = layers.noisy_head(feats, w, b, tf.zeros((5, 1), tf.float64),
                           tf.constant([3.0], tf.float64), sample=True, seed=SEED)
  assert loud.shape == (4, 3)
  assert np.abs(loud - mu).max() > 0.1


def test_fused_batch_norm_equals_the_reference_with_second_order_gradients():
  """float32 takes the fused kernel; it must match the written-out statistics in value,
  grouping, and the gradient of a gradient (what the inner loop differentiates)."""
  x = tf.cast(_random((6, 5, 5, 3), 7), tf.float32)
  offset = tf.constant([0.1, -0.2, 0.3])
  w = tf.cast(_random((6, 5, 5, 3), 8), tf.float32)
  for groups in (1, 3):
    results = []
    for norm in (layers.batch_norm, layers.batch_norm_reference):
      with tf.GradientTape() as outer:
        outer.watch([x, offset])
        with tf.GradientTape() as inner:
          inner.watch(x)
          y = norm(x, offset, groups)
          loss = tf.reduce_sum(tf.square(y * w))
        g = inner.gradient(loss, x)
        second = tf.reduce_sum(tf.sin(g))
      results.append([y, g] + outer.gradient(second, [x, offset]))
    for fused, reference in zip(*results):
      np.testing.assert_allclose(fused, reference, rtol=2e-4, atol=2e-4)


def test_baseline_noises_are_their_formulas():
  rng = np.random.default_rng(0)
  mu = tf.constant(rng.normal(size=(3, 4)))
  alpha = tf.constant(rng.normal(size=(3, 4)))
  seed = tf.constant([4, 2])
  eps = noise_lib.box_muller_normal(tf.shape(mu), seed, tf.float64).numpy()
  expected = {'metadrop': mu * np.log1p(np.exp(alpha + eps)),
              'learned_add': mu + np.log1p(np.exp(alpha)) * eps,
              'fixed_mult': mu * (1 + 0.3 * eps), 'fixed_add': mu + 0.3 * eps,
              'info_dropout': mu * np.exp(0.7 / (1 + np.exp(-alpha)) * eps)}
  assert noise_lib.make_noise('vib') is None  # drawn by the network on its features
  for kind, want in expected.items():
    noise = noise_lib.make_noise(kind, 0.3)
    np.testing.assert_allclose(noise(mu, alpha, True, seed), want, rtol=1e-12)
    deterministic = mu * np.log1p(np.exp(alpha)) if kind == 'metadrop' else mu
    np.testing.assert_allclose(noise(mu, alpha, False), deterministic, rtol=1e-12)
  np.testing.assert_allclose(noise_lib.information_dropout_kl(alpha),
                             -np.log(0.7 / (1 + np.exp(-alpha.numpy()))), rtol=1e-12)
  with pytest.raises(ValueError, match='unknown noise type'):
    noise_lib.make_noise('dropout')
  assert sorted(noise_lib.REGISTRY) == sorted(expected) + ['vib']


def test_mix_is_a_convex_combination_with_a_permutation():
  h = tf.constant(np.arange(12.0).reshape(4, 3))
  perm = tf.constant([2, 0, 3, 1])
  np.testing.assert_allclose(layers.mix(h, 0.25, perm),
                             0.25 * h.numpy() + 0.75 * h.numpy()[[2, 0, 3, 1]])
  assert layers.mixed_at(h, None, 0) is h
