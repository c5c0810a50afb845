"""Tests of the network: shapes, parameter counts, fast weights, the role of phi."""

import numpy as np
import pytest
import tensorflow as tf

import helpers
from metadrop_tf import objectives
from metadrop_tf.nets import model as model_lib

SEED = tf.constant([1, 2], tf.int32)


def _conv_params(c_in, c):
  return 9 * c_in * c + c + 9 * c * c * 3 + 3 * c


@pytest.mark.parametrize('image_shape, channels, way, feature', [
    ((28, 28, 1), 64, 20, 64),  # Omniglot: 28 -> 14 -> 7 -> 3 -> 1
    ((84, 84, 3), 32, 5, 800),  # miniImageNet: 84 -> 42 -> 21 -> 10 -> 5, 25 * 32
])
def test_shapes_and_parameter_counts(image_shape, channels, way, feature):
  model = model_lib.MetaDropoutNet(way, image_shape, channels, dtype='float32')
  assert model.feature_dim == feature
  count = lambda group: sum(int(np.prod(v.shape)) for v in group.values())
  assert count(model.theta) == _conv_params(image_shape[-1], channels) + feature * way + way
  assert count(model.phi) == _conv_params(image_shape[-1], channels) + feature + 1
  assert count(model.beta) == 4 * channels
  assert model.phi['dense_kernel'].shape == (feature, 1)
  x = tf.zeros((2,) + image_shape)
  assert model.features(x).shape == (2, feature)
  assert model(x, sample=True, seed=SEED).shape == (2, way)


def test_initializers_follow_the_spec():
  model = model_lib.MetaDropoutNet(20, (28, 28, 1), 64, dtype='float32')
  kernel = model.theta['conv1_kernel'].numpy()
  assert np.abs(kernel).max() <= 2 * 0.02 + 1e-7  # truncated normal, stddev 0.02
  assert 0.01 < kernel.std() < 0.02
  assert 0.015 < model.theta['dense_kernel'].numpy().std() < 0.025
  for group in (model.theta, model.phi):
    assert not np.any(group['conv0_bias'].numpy()) and not np.any(group['dense_bias'].numpy())
  assert not any(np.any(v.numpy()) for v in model.beta.values())


def test_explicit_theta_equals_the_variables():
  model = helpers.tiny_model()
  x = helpers.random_episode().query_x[0]
  np.testing.assert_array_equal(model(x, theta=model.theta), model(x))
  np.testing.assert_array_equal(model(x, theta=model.initial_theta()), model(x))


def _perturb_phi(model):
  for v in model.phi.values():
    v.assign_add(tf.fill(v.shape, tf.constant(0.3, v.dtype)))


def test_deterministic_metadrop_forward_depends_on_phi():
  model = helpers.tiny_model()
  x = helpers.random_episode().query_x[0]
  before = model(x)
  _perturb_phi(model)
  assert np.abs(model(x) - before).max() > 1e-6


def test_maml_forward_ignores_phi_and_noise():
  model = helpers.tiny_model(noisy=False)
  x = helpers.random_episode().query_x[0]
  before = model(x)
  _perturb_phi(model)
  np.testing.assert_array_equal(model(x), before)
  np.testing.assert_array_equal(model(x, sample=True, seed=SEED), before)


def test_sampling_is_seeded():
  model = helpers.tiny_model()
  x = helpers.random_episode().query_x[0]
  first = model(x, sample=True, seed=SEED)
  np.testing.assert_array_equal(first, model(x, sample=True, seed=SEED))
  assert np.abs(first - model(x, sample=True, seed=tf.constant([1, 3]))).max() > 1e-6
  assert np.abs(first - model(x)).max() > 1e-6


def test_mc_mean_has_lower_variance_than_one_sample():
  model = helpers.tiny_model(channels=3)
  episode = helpers.random_episode()
  x, y = episode.support_x[0], episode.support_y[0]

  def mc_loss(m, seed):
    logits = model(x, sample=True, seed=tf.constant([seed, 0]), copies=m)
    return float(objectives.cross_entropy(logits, tf.tile(y, [m, 1])))

  one = np.var([mc_loss(1, s) for s in range(30)])
  many = np.var([mc_loss(8, s) for s in range(30)])
  assert many < 0.5 * one


@pytest.mark.parametrize('maml', [False, True])
def test_copies_without_sampling_repeat_the_deterministic_forward(maml):
  """Per-copy batch norm on identical copies gives each copy the statistics of the batch."""
  model = helpers.tiny_model(noisy=not maml)
  x = helpers.random_episode().support_x[0]
  copies = model(x, copies=3, sample=maml, seed=SEED)
  np.testing.assert_allclose(copies, tf.tile(model(x), [3, 1]), rtol=1e-12, atol=1e-12)
  features = model.features(x, copies=3)
  assert features.shape == (3 * x.shape[0], model.feature_dim)


def test_noise_scales_are_softplus_alpha_per_block_and_logit_sigma():
  model = helpers.tiny_model()
  x = helpers.random_episode().query_x[0]
  scales = model.noise_scales(x)
  assert list(scales) == ['block0', 'block1', 'block2', 'block3', 'logit_sigma']
  assert [tuple(s.shape) for s in scales.values()] == [
      (6, 16, 16, 2), (6, 8, 8, 2), (6, 4, 4, 2), (6, 2, 2, 2), (6, 1)]
  first = tf.nn.softplus(tf.nn.conv2d(x, model.phi['conv0_kernel'], 1, 'SAME')
                         + model.phi['conv0_bias'])
  np.testing.assert_allclose(scales['block0'], first, rtol=1e-12)
  assert helpers.tiny_model(noisy=False).noise_scales(x) == {}
