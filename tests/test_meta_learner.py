"""Numerical tests of the inner loop and the meta-gradient (float64, tiny network).

The meta-objective with a fixed noise seed is a deterministic function of (theta0, phi, beta),
so its full second-order gradient must match central finite differences.
"""

import numpy as np
import pytest
import tensorflow as tf

import helpers
from metadrop_tf import layers
from metadrop_tf import meta_learner

SEED = tf.constant([7, 11], tf.int32)
ADAPT = meta_learner.Adaptation(n_steps=2, inner_lr=0.2, mc_samples=2)


def _meta_loss(model, episode, adaptation=ADAPT):
  return meta_learner.meta_batch_outputs(model, episode, SEED, adaptation)['loss']


def _gradients(model, episode, variables, adaptation=ADAPT):
  with tf.GradientTape() as tape:
    loss = _meta_loss(model, episode, adaptation)
  return tape.gradient(loss, variables)


def _finite_difference(model, episode, variable, index, h=1e-7):
  """Central difference. h is small because the meta-loss is only piecewise smooth: the inner
  gradients jump where a ReLU or max-pool switches, and on a tiny net such points are ~1e-4 away."""
  def at(delta):
    original = variable.numpy()
    bumped = original.copy()
    bumped[index] += delta
    variable.assign(bumped)
    value = float(_meta_loss(model, episode))
    variable.assign(original)
    return value
  return (at(h) - at(-h)) / (2 * h)


def _check_against_finite_differences(model, episode, variable):
  grad = _gradients(model, episode, [variable])[0].numpy()
  rng = np.random.default_rng(0)
  indices = [np.unravel_index(np.argmax(np.abs(grad)), grad.shape)]
  indices += [tuple(rng.integers(0, s) for s in grad.shape) for _ in range(2)]
  for index in indices:
    numeric = _finite_difference(model, episode, variable, index)
    np.testing.assert_allclose(grad[index], numeric, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize('group, name', [
    ('theta', 'conv1_kernel'), ('theta', 'dense_kernel'), ('phi', 'conv0_kernel'),
    ('phi', 'dense_kernel'), ('beta', 'bn2')])
def test_metadrop_meta_gradient_matches_finite_differences(group, name):
  model = helpers.tiny_model()
  _check_against_finite_differences(model, helpers.random_episode(metabatch=1),
                                    getattr(model, group)[name])


@pytest.mark.parametrize('group, name', [('theta', 'conv2_kernel'), ('beta', 'bn0')])
def test_maml_meta_gradient_matches_finite_differences(group, name):
  model = helpers.tiny_model(maml=True)
  _check_against_finite_differences(model, helpers.random_episode(metabatch=1),
                                    getattr(model, group)[name])


def test_gradients_reach_theta0_phi_and_beta():
  model = helpers.tiny_model()
  grads = _gradients(model, helpers.random_episode(), model.meta_variables())
  assert len(grads) == len(model.theta) + len(model.phi) + len(model.beta)
  for v, g in zip(model.meta_variables(), grads):
    assert g is not None and np.abs(g.numpy()).max() > 0, v.path


def test_maml_leaves_phi_untrained():
  model = helpers.tiny_model(maml=True)
  assert not {id(v) for v in model.phi.values()} & {id(v) for v in model.meta_variables()}
  grads = _gradients(model, helpers.random_episode(), list(model.phi.values()))
  assert all(g is None for g in grads)


def test_first_order_equals_the_query_gradient_at_the_adapted_theta():
  """Hand-derived: with stopped inner gradients, d theta_S / d theta_0 = I, so the meta-gradient
  of theta_0 is dL_query/dtheta evaluated at theta_S (and differs from second order)."""
  model = helpers.tiny_model()
  episode = helpers.random_episode(metabatch=1)
  first = ADAPT._replace(first_order=True)
  fo = _gradients(model, episode, list(model.theta.values()), first)
  so = _gradients(model, episode, list(model.theta.values()))
  theta_s = meta_learner.inner_loop(model, episode.support_x[0], episode.support_y[0],
                                    meta_learner.fold_seed(SEED, 0), first)[-1]
  with tf.GradientTape() as tape:
    tape.watch(theta_s)
    loss = meta_learner.cross_entropy(model(episode.query_x[0], theta=theta_s),
                                      episode.query_y[0])
  by_hand = tape.gradient(loss, theta_s)
  for name, g in zip(model.theta, fo):
    np.testing.assert_allclose(g, by_hand[name], rtol=1e-10, atol=1e-14)
  kernel = list(model.theta).index('conv1_kernel')
  assert np.abs(fo[kernel] - so[kernel]).max() > 1e-3 * np.abs(so[kernel]).max()


def _plain_maml_logits(x, w, beta):
  """A MAML conv-4 forward written out with raw TF ops (independent of metadrop_tf.layers)."""
  h = x
  for b in range(4):
    h = tf.nn.conv2d(h, w[f'conv{b}_kernel'], 1, 'SAME') + w[f'conv{b}_bias']
    mean = tf.reduce_mean(h, [0, 1, 2])
    var = tf.reduce_mean((h - mean) ** 2, [0, 1, 2])
    h = tf.nn.max_pool2d(tf.nn.relu((h - mean) / tf.sqrt(var + 1e-3) + beta[f'bn{b}']),
                         2, 2, 'VALID')
  return tf.reshape(h, [x.shape[0], -1]) @ w['dense_kernel'] + w['dense_bias']


def test_maml_equals_plain_maml_written_by_hand_for_one_step():
  model = helpers.tiny_model(maml=True)
  ep = helpers.random_episode(metabatch=1)
  adapt = meta_learner.Adaptation(n_steps=1, inner_lr=0.3)
  theta0, beta = model.theta, model.beta
  with tf.GradientTape() as outer:
    with tf.GradientTape() as inner:
      support_loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
          ep.support_y[0], _plain_maml_logits(ep.support_x[0], theta0, beta)))
    grads = inner.gradient(support_loss, theta0)
    fast = {k: theta0[k] - 0.3 * grads[k] for k in theta0}
    query_loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
        ep.query_y[0], _plain_maml_logits(ep.query_x[0], fast, beta)))
  expected = outer.gradient(query_loss, model.meta_variables())
  got = _gradients(model, ep, model.meta_variables(), adapt)
  np.testing.assert_allclose(float(_meta_loss(model, ep, adapt)), float(query_loss), rtol=1e-12)
  for e, g in zip(expected, got):
    np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize('maml, n_steps', [(False, 40), (True, 5)])
def test_inner_loop_lowers_the_support_loss(maml, n_steps):
  """Metadrop's noise at init (softplus(N(0,1)) factors, logit noise 0.69) slows adaptation."""
  model = helpers.tiny_model(maml=maml, channels=4)
  ep = helpers.random_episode(metabatch=1, shot=2)
  adapt = meta_learner.Adaptation(n_steps=n_steps, inner_lr=0.5, mc_samples=4)
  thetas = meta_learner.inner_loop(model, ep.support_x[0], ep.support_y[0], SEED, adapt)
  assert len(thetas) == n_steps + 1
  losses = [float(meta_learner.cross_entropy(model(ep.support_x[0], theta=t), ep.support_y[0]))
            for t in (thetas[0], thetas[-1])]
  assert losses[1] < losses[0] - 0.2, losses
  for name, v in model.theta.items():  # the inner loop never assigns to variables
    np.testing.assert_array_equal(v.numpy(), thetas[0][name])


def test_meta_batch_outputs_average_the_tasks():
  model = helpers.tiny_model()
  ep = helpers.random_episode(metabatch=2)
  both = meta_learner.meta_batch_outputs(model, ep, SEED, ADAPT)
  single = [meta_learner.task_outputs(model, ep.support_x[b], ep.support_y[b], ep.query_x[b],
                                      ep.query_y[b], meta_learner.fold_seed(SEED, b), ADAPT)
            for b in range(2)]
  assert set(both) == {'loss', 'acc'}
  for key in both:
    np.testing.assert_allclose(both[key], (single[0][key] + single[1][key]) / 2, rtol=1e-6)
  pre = meta_learner.mean_pre_adaptation_outputs(model, ep)
  single_pre = [meta_learner.pre_adaptation_outputs(model, ep.query_x[b], ep.query_y[b])
                for b in range(2)]
  for key in ('loss_pre', 'acc_pre'):
    np.testing.assert_allclose(pre[key], (single_pre[0][key] + single_pre[1][key]) / 2,
                               rtol=1e-6)
  first = meta_learner.cross_entropy(model(ep.query_x[0]), ep.query_y[0])
  np.testing.assert_allclose(single_pre[0]['loss_pre'], first, rtol=1e-6)


def test_fast_float32_path_matches_the_reference_path(monkeypatch):
  """float32 runs the fused batch norm; its loss and meta-gradients at 1 inner step must match
  the written-out reference statistics (float32 tolerance; more steps are ill-conditioned)."""
  model = helpers.tiny_model(dtype='float32', channels=6, way=4)
  ep = helpers.random_episode(metabatch=2, way=4, shot=2, query=2, dtype=np.float32)
  adapt = meta_learner.Adaptation(n_steps=1, inner_lr=0.3, mc_samples=3)

  def loss_and_grads():
    with tf.GradientTape() as tape:
      loss = _meta_loss(model, ep, adapt)
    return [loss] + tape.gradient(loss, model.meta_variables())

  fast = loss_and_grads()
  monkeypatch.setattr(layers, 'batch_norm', layers.batch_norm_reference)
  reference = loss_and_grads()
  for f, r in zip(fast, reference):
    np.testing.assert_allclose(f, r, rtol=1e-3, atol=1e-5 * np.abs(r).max())
