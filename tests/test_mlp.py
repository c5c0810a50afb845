"""Tests of the MLP network (sinusoid): its parameter groups, its forward against NumPy, Meta
Dropout's noise on the hidden units, and second-order meta-gradients of regression learners
against finite differences (float64)."""

import numpy as np
import pytest
import tensorflow as tf

import helpers
from metadrop_tf import learners
from metadrop_tf import objectives
from metadrop_tf.episodes import sampling
from metadrop_tf.episodes import sinusoid
from metadrop_tf.nets import mlp
from metadrop_tf.nets import network as network_lib


def _softplus(x):
  return np.log1p(np.exp(x))


def _network(maml, hidden=(5, 4), dtype='float64', seed=0):
  network = mlp.MLP(1, (1,), hidden, noisy=not maml, dtype=dtype, seed=seed)
  rng = np.random.default_rng(seed)
  for variable in network.variables:  # larger than the 0.01 init, so every path matters
    variable.assign(rng.normal(0, 0.7, variable.shape))
  return network


def _numpy_forward(network, x, noise=True):
  theta = {k: v.numpy() for k, v in network.theta.items()}
  phi = {k: v.numpy() for k, v in network.phi.items()}
  h = x
  for index in range(len(network.hidden)):
    name = f'dense{index}'
    mu = h @ theta[f'{name}_kernel'] + theta[f'{name}_bias']
    if noise:
      mu = mu * _softplus(h @ phi[f'{name}_kernel'] + phi[f'{name}_bias'])
    h = np.maximum(mu, 0)
  return h @ theta['dense_kernel'] + theta['dense_bias']


def test_groups_and_shapes():
  network = mlp.MLP(1, (1,), (40, 40))
  shapes = {k: tuple(v.shape) for k, v in network.theta.items()}
  assert shapes == {'dense0_kernel': (1, 40), 'dense0_bias': (40,), 'dense1_kernel': (40, 40),
                    'dense1_bias': (40,), 'dense_kernel': (40, 1), 'dense_bias': (1,)}
  assert {k: tuple(v.shape) for k, v in network.phi.items()} == {
      k: s for k, s in shapes.items() if not k.startswith('dense_')}
  assert network.beta == {}
  count = sum(int(np.prod(s)) for s in shapes.values())
  assert count == 1 * 40 + 40 + 40 * 40 + 40 + 40 + 1
  assert f'{count:,}' in network_lib.describe(network)
  x = tf.zeros([7, 1])
  assert network(x).shape == (7, 1)
  assert network(x, sample=True, seed=tf.constant([1, 2]), copies=3).shape == (21, 1)


@pytest.mark.parametrize('maml', [True, False])
def test_deterministic_forward_matches_numpy(maml):
  network = _network(maml)
  x = np.linspace(-5, 5, 9)[:, None]
  np.testing.assert_allclose(network(tf.constant(x)).numpy(),
                             _numpy_forward(network, x, noise=not maml), rtol=1e-12)
  scales = network.noise_scales(tf.constant(x))
  assert (scales == {}) if maml else sorted(scales) == ['dense0', 'dense1']


def test_noise_copies_are_distinct_samples_and_seeded():
  network = _network(maml=False)
  x = tf.constant(np.linspace(-5, 5, 6)[:, None])
  seed = tf.constant([3, 4])
  out = network(x, sample=True, seed=seed, copies=4).numpy().reshape(4, 6)
  np.testing.assert_array_equal(out, network(x, sample=True, seed=seed, copies=4).numpy()
                                .reshape(4, 6))
  for a in range(4):
    for b in range(a):
      assert np.abs(out[a] - out[b]).max() > 1e-6
  same = network(x, sample=False, copies=4).numpy().reshape(4, 6)
  np.testing.assert_allclose(same, np.tile(network(x).numpy().reshape(1, 6), (4, 1)),
                             rtol=1e-12)
  maml = _network(maml=True)
  np.testing.assert_array_equal(maml(x, sample=True, seed=seed).numpy(), maml(x).numpy())


def test_sampled_hidden_units_follow_the_noise_distribution():
  """With one hidden unit fed a constant input, the sampled pre-activation / mu is
  softplus(alpha + eps), eps ~ N(0, 1): compare its mean with quadrature."""
  network = mlp.MLP(1, (1,), (1,), dtype='float64')
  network.theta['dense0_kernel'].assign([[1.0]])
  network.phi['dense0_kernel'].assign([[0.0]])
  network.phi['dense0_bias'].assign([0.3])
  x = tf.ones([1, 1], tf.float64)
  hidden = network.hidden_outputs(x, sample=True, seed=tf.constant([5, 6]), copies=20000)[0]
  grid = np.linspace(-8, 8, 4001)
  density = np.exp(-grid ** 2 / 2) / np.sqrt(2 * np.pi)
  expected = np.sum(_softplus(0.3 + grid) * density) * (grid[1] - grid[0])
  assert abs(float(tf.reduce_mean(hidden)) - expected) < 4 * 0.6 / np.sqrt(20000)


def _episode(metabatch=2, shot=3, query=4):
  sampler = sinusoid.SinusoidSampler(shot, query, seed=0, split='train')
  parts = sampler.meta_batch(0, metabatch)
  return sampling.Episode(*[tf.constant(p, tf.float64) for p in parts])


@pytest.mark.parametrize('name', ['maml', 'metadrop'])
def test_regression_meta_gradients_match_finite_differences(name):
  network = _network(maml=name == 'maml')
  learner = learners.REGISTRY[name](network, 2, 0.05, objective=objectives.REGRESSION)
  episode = _episode()
  names = ['dense0_kernel', 'dense1_bias', 'dense_kernel']
  for variable in [network.theta[n] for n in names] + (
      [network.phi['dense0_kernel'], network.phi['dense1_bias']] if name == 'metadrop' else []):
    helpers.check_against_finite_differences(learner, episode, variable)


def test_regression_outputs_are_the_mse_before_and_after_adaptation():
  network = _network(maml=True)
  learner = learners.REGISTRY['maml'](network, 1, 0.01, objective=objectives.REGRESSION)
  sx, sy, qx, qy = [tf.constant(p, tf.float64) for p in
                    sinusoid.SinusoidSampler(5, 8, seed=0, split='test').task(0)]
  out = learner.task_outputs(sx, sy, qx, qy, tf.constant([0, 1]))
  pre = learner.pre_adaptation_outputs(qx, qy)
  with tf.GradientTape() as tape:
    predictions = network(sx)
    support_loss = tf.reduce_mean(tf.square(predictions - sy))
  grads = tape.gradient(support_loss, network.theta)
  adapted = {k: v - 0.01 * grads[k] for k, v in network.theta.items()}
  expected = np.mean((network(qx, theta=adapted).numpy() - qy.numpy()) ** 2)
  np.testing.assert_allclose(float(out['loss']), expected, rtol=1e-10)
  np.testing.assert_allclose(float(out['mse']), expected, rtol=1e-6)
  np.testing.assert_allclose(float(pre['mse_pre']),
                             np.mean((network(qx).numpy() - qy.numpy()) ** 2), rtol=1e-6)
