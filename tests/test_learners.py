"""Numerical tests of the learners (float64, tiny network, 2 inner steps).

With a fixed noise seed a learner's meta-objective is a deterministic function of its
meta-variables, so its full (second-order) gradient must match central finite differences,
including the gradients of learned inner learning rates and of the multi-step loss (first-order
methods are not gradients of it: they are checked by hand). Then the equivalences between
learners that the options promise.
"""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

import helpers
from metadrop_tf import components
from metadrop_tf import config as config_lib
from metadrop_tf import learners
from metadrop_tf import objectives
from metadrop_tf import seeds as seeds_lib
from metadrop_tf.learners import batch_norm
from metadrop_tf.learners import gradient
from metadrop_tf.learners import schedules
from metadrop_tf.nets import layers
from metadrop_tf.nets import noise as noise_lib
from metadrop_tf.train import train_step

SEED = tf.constant(helpers.FD_SEED, tf.int32)
MC = helpers.FD_MC  # MC samples of the support loss in these tests (training uses 1)


_meta_loss = helpers.meta_loss
_gradients = helpers.meta_gradients
_finite_difference = helpers.finite_difference
_check_against_finite_differences = helpers.check_against_finite_differences


def _variable(learner, group, name):
  if group == 'own':
    return getattr(learner.own, name)
  if group in ('rates', 'offsets'):  # a learner with both kinds of own variables
    return getattr(getattr(learner, group), name)
  return getattr(learner.network, group)[name]


PER_STEP = {'bn_mode': 'per_step'}
FD_CASES = [
    # (learner, options, group, variable name, iteration)
    ('metadrop', {}, 'theta', 'conv1_kernel', None),
    ('metadrop', {}, 'theta', 'dense_kernel', None),
    ('metadrop', {}, 'phi', 'conv0_kernel', None),
    ('metadrop', {}, 'phi', 'dense_kernel', None),
    ('metadrop', {}, 'beta', 'bn2', None),
    ('maml', {}, 'theta', 'conv2_kernel', None),
    ('maml', {}, 'beta', 'bn0', None),
    ('metasgd', {}, 'theta', 'conv1_kernel', None),
    ('metasgd', {}, 'own', 'lr_conv1_kernel', None),
    ('metasgd', {}, 'own', 'lr_dense_bias', None),
    ('metasgd', {'meta_dropout': True}, 'phi', 'conv1_kernel', None),
    ('maml', {'lslr': True}, 'own', 'lslr_conv0_kernel', None),
    ('maml', {'lslr': True}, 'theta', 'dense_kernel', None),
    ('anil', {}, 'theta', 'conv1_kernel', None),
    ('anil', {}, 'theta', 'dense_bias', None),
    ('maml', {'msl_iters': 10}, 'theta', 'conv0_kernel', 3),
    ('maml', {'first_order_iters': 5}, 'theta', 'conv1_kernel', 5),
    ('maml', {'momentum': 0.6, 'weight_decay': 0.05}, 'theta', 'conv2_kernel', None),
    ('maml', {'zero_head': True}, 'theta', 'conv3_kernel', None),
    ('metadrop', {'bn_mode': 'inductive'}, 'theta', 'conv1_kernel', None),
    ('metadrop', {'bn_mode': 'inductive'}, 'phi', 'conv0_kernel', None),
    ('maml', {'bn_mode': 'inductive'}, 'beta', 'bn2', None),
    ('maml', {'bn_mode': 'inductive', 'msl_iters': 4}, 'theta', 'conv3_kernel', 1),
    ('maml', PER_STEP, 'offsets', 'bnstep_bn1', None),
    ('metadrop', PER_STEP, 'theta', 'conv1_kernel', None),
    ('maml', dict(PER_STEP, lslr=True), 'rates', 'lslr_conv0_kernel', None),
    ('maml', dict(PER_STEP, lslr=True, msl_iters=4), 'offsets', 'bnstep_bn3', 1),
    # the paper's regularizer baselines (issue 17)
    ('metadrop', {'noise_type': 'learned_add'}, 'phi', 'conv0_kernel', None),
    ('metadrop', {'noise_type': 'learned_add'}, 'theta', 'conv1_kernel', None),
    ('metadrop', {'noise_type': 'fixed_mult', 'noise_scale': 0.3}, 'theta', 'conv1_kernel',
     None),
    ('metadrop', {'noise_type': 'fixed_add', 'noise_scale': 0.3}, 'theta', 'conv2_kernel',
     None),
    ('metadrop', {'noise_type': 'info_dropout', 'noise_penalty': 0.1}, 'phi', 'conv1_kernel',
     None),
    ('metadrop', {'noise_type': 'info_dropout', 'noise_penalty': 0.1}, 'theta',
     'conv0_kernel', None),
    ('metadrop', {'noise_type': 'vib', 'noise_penalty': 0.1}, 'phi', 'vib_kernel', None),
    ('metadrop', {'noise_type': 'vib', 'noise_penalty': 0.1}, 'theta', 'conv2_kernel', None),
    ('maml', {'mixup': 'input'}, 'theta', 'conv1_kernel', None),
    ('maml', {'mixup': 'manifold'}, 'theta', 'conv0_kernel', None),
    ('maml', {'mixup': 'manifold'}, 'beta', 'bn1', None),
]


@pytest.mark.parametrize('name, options, group, variable, iteration', FD_CASES,
                         ids=[f'{c[0]}-{"-".join(c[1]) or "default"}-{c[3]}-{c[4]}'
                              for c in FD_CASES])
def test_meta_gradient_matches_finite_differences(name, options, group, variable, iteration):
  learner = helpers.tiny_learner(name, **options)
  iteration = None if iteration is None else tf.constant(iteration, tf.int64)
  _check_against_finite_differences(learner, helpers.random_episode(metabatch=1),
                                    _variable(learner, group, variable), iteration)


def test_every_module_of_the_package_registers_its_method():
  """What each module of learners/ decorates with learners.register is registered, under its
  class there, and is a component; the list comes from the modules, not from this test."""
  package = os.path.dirname(learners.__file__)
  declared = {}
  for name in sorted(os.listdir(package)):
    if name.endswith('.py'):
      for learner in re.findall(r"^@learners\.register\('(\w+)'\)", open(
          os.path.join(package, name)).read(), re.M):
        declared[learner] = f'metadrop_tf.learners.{name[:-3]}'
  assert len(declared) >= 7 and {'maml', 'metadrop'} <= set(declared)
  ours = {n: c.__module__ for n, c in learners.REGISTRY.items() if c.__module__ in
          set(declared.values())}
  assert ours == declared
  assert all(('learner', n) in components.REGISTRY for n in declared)
  with pytest.raises(config_lib.ConfigError, match=r"`learner=reptile` is unknown; choose "
                     r"one of \['anil', 'csn'"):
    learners.build(helpers.tiny_config(learner='reptile'))


@pytest.mark.parametrize('name, groups', [
    ('metadrop', ('theta', 'phi', 'beta')), ('maml', ('theta', 'beta')),
    ('metasgd', ('theta', 'beta', 'own'))])
def test_meta_variables_are_what_each_learner_trains(name, groups):
  learner = helpers.tiny_learner(name)
  network = learner.network
  expected = [v for g in ('theta', 'phi', 'beta') if g in groups
              for v in getattr(network, g).values()]
  if 'own' in groups:
    expected += list(learner.own.trainable_variables)
  assert [id(v) for v in learner.meta_variables()] == [id(v) for v in expected]
  grads = _gradients(learner, helpers.random_episode(), learner.meta_variables())
  for v, g in zip(learner.meta_variables(), grads):
    assert g is not None and np.abs(g.numpy()).max() > 0, v.path


def _maml_gradients(episode, **options):
  learner = helpers.tiny_learner('maml', **options)
  return learner, _gradients(learner, episode, learner.network.meta_variables())


def test_metasgd_with_fixed_rates_at_inner_lr_is_maml():
  episode = helpers.random_episode(metabatch=2)
  _, expected = _maml_gradients(episode)
  metasgd = helpers.tiny_learner('metasgd', learn_rates=False)
  assert not metasgd.own.trainable_variables
  got = _gradients(metasgd, episode, metasgd.network.meta_variables())
  for e, g in zip(expected, got):
    np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-15)


class _EncoderFrozenMAML(gradient.GradientLearner):
  """MAML whose inner updates of the encoder are zeroed (rate 0): what ANIL must equal."""

  def inner_rates(self, state, step):
    rates = super().inner_rates(state, step)
    return {name: rate * (1.0 if name in self.network.head_names else 0.0)
            for name, rate in rates.items()}


def test_anil_is_maml_with_the_encoders_inner_gradient_zeroed():
  episode = helpers.random_episode(metabatch=2)
  anil = helpers.tiny_learner('anil')
  assert anil.adapted == ['dense_kernel', 'dense_bias']
  frozen = _EncoderFrozenMAML(helpers.tiny_model(noisy=False), 2, 0.2)
  got = _gradients(anil, episode, anil.network.meta_variables())
  expected = _gradients(frozen, episode, frozen.network.meta_variables())
  for e, g in zip(expected, got):
    np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-14)
  state = anil.adapt(episode.support_x[0], episode.support_y[0], SEED)[-1]
  for name, value in anil.network.theta.items():  # the encoder never moves
    assert (name in anil.adapted) != np.array_equal(state[name], value.numpy())


def test_multi_step_loss_with_all_weight_on_the_last_step_is_maml():
  episode = helpers.random_episode(metabatch=1)
  learner = helpers.tiny_learner('maml', msl_iters=10)
  args = (episode.support_x[0], episode.support_y[0], episode.query_x[0], episode.query_y[0],
          SEED, MC)
  variables = learner.network.meta_variables()
  with tf.GradientTape(persistent=True) as tape:
    last_only = learner.task_outputs(*args, weights=tf.constant([0.0, 1.0], tf.float64))
    plain = learner.task_outputs(*args)  # no iteration: the last step's loss
    annealed = learner.task_outputs(*args, iteration=tf.constant(20, tf.int64))
  assert float(last_only['loss']) == float(plain['loss']) == float(annealed['loss'])
  for a, b in zip(tape.gradient(last_only['loss'], variables),
                  tape.gradient(plain['loss'], variables)):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
  early = learner.task_outputs(*args, iteration=tf.constant(0, tf.int64))
  assert abs(float(early['loss']) - float(plain['loss'])) > 1e-6


def test_multi_step_loss_weights_anneal_to_the_last_step():
  learner = helpers.tiny_learner('maml', n_steps=5, msl_iters=100)
  weights = [schedules.multi_step_weights(tf.constant(i, tf.int64), learner.n_steps,
                                          learner.msl_iters, learner.dtype).numpy()
             for i in (0, 50, 100, 99)]
  np.testing.assert_allclose(weights[0], [0.2] * 5)
  np.testing.assert_allclose(weights[2], [0, 0, 0, 0, 1])
  assert weights[1][0] < 0.2 < weights[1][-1] and abs(weights[1].sum() - 1) < 1e-9
  np.testing.assert_allclose(weights[3][:4], [0.03 / 5] * 4)  # the floor before the switch


def test_derivative_order_annealing_switches_at_the_configured_iteration():
  episode = helpers.random_episode(metabatch=1)
  doa = helpers.tiny_learner('maml', first_order_iters=5)
  fomaml = helpers.tiny_learner('fomaml')
  maml = helpers.tiny_learner('maml')
  variables = lambda learner: learner.network.meta_variables()
  at = {i: _gradients(doa, episode, variables(doa), tf.constant(i, tf.int64)) for i in (4, 5)}
  first = _gradients(fomaml, episode, variables(fomaml))
  second = _gradients(maml, episode, variables(maml))
  for a, f, s in zip(at[4], first, second):
    np.testing.assert_allclose(a, f, rtol=1e-12, atol=1e-15)
  for a, s in zip(at[5], second):
    np.testing.assert_allclose(a, s, rtol=1e-12, atol=1e-15)
  kernel = list(doa.network.theta).index('conv1_kernel')
  assert np.abs(first[kernel] - second[kernel]).max() > 1e-3 * np.abs(second[kernel]).max()


def test_inner_momentum_and_weight_decay_follow_torch_sgd():
  episode = helpers.random_episode(metabatch=1)
  x, y = episode.support_x[0], episode.support_y[0]
  plain = helpers.tiny_learner('maml').adapt(x, y, SEED)
  zero = helpers.tiny_learner('maml', momentum=0.0, weight_decay=0.0).adapt(x, y, SEED)
  for a, b in zip(plain, zero):
    for name in a:
      np.testing.assert_array_equal(a[name], b[name])
  learner = helpers.tiny_learner('maml', momentum=0.5, weight_decay=0.1)
  got = learner.adapt(x, y, SEED)
  network, lr = learner.network, 0.2

  def grad(theta):
    with tf.GradientTape() as tape:
      tape.watch(theta)
      loss = objectives.cross_entropy(network(x, theta=theta, sample=True), y)
    return {k: g + 0.1 * theta[k] for k, g in tape.gradient(loss, theta).items()}

  theta0 = network.initial_theta()
  d0 = grad(theta0)
  theta1 = {k: theta0[k] - lr * d0[k] for k in theta0}
  d1 = grad(theta1)
  theta2 = {k: theta1[k] - lr * (0.5 * d0[k] + d1[k]) for k in theta0}
  for name in theta0:
    np.testing.assert_allclose(got[2][name], theta2[name], rtol=1e-12, atol=1e-15)


@pytest.mark.slow
def test_zero_head_trained_5_way_evaluates_3_and_10_way():
  learner = helpers.tiny_learner('maml', way=5, zero_head=True, channels=4)
  assert learner.network.theta['dense_kernel'].shape[-1] == 0
  assert not {id(learner.network.theta[n]) for n in learner.network.head_names} & {
      id(v) for v in learner.meta_variables()}
  config = helpers.tiny_config(way=5, zero_head=True, metabatch=2, meta_lr=3e-3)
  optimizer = train_step.make_optimizer(learner, config)
  step = train_step.make_outer_step(learner, optimizer, config)
  before = learner.network.theta['conv0_kernel'].numpy().copy()
  for i in range(3):
    step(helpers.random_episode(metabatch=2, way=5, seed=i), tf.constant(i, tf.int64),
         tf.constant(True))
  assert np.abs(learner.network.theta['conv0_kernel'].numpy() - before).max() > 0
  for way in (3, 10):
    episode = helpers.random_episode(metabatch=1, way=way)
    out = learner.per_task_outputs(episode, [SEED], 1)
    assert out['acc'].shape == (1,) and np.isfinite(out['loss'].numpy()).all()
    state = learner.adapt(episode.support_x[0], episode.support_y[0], SEED)
    assert state[0]['dense_kernel'].shape[-1] == way and not np.any(state[0]['dense_kernel'])
    assert np.any(state[-1]['dense_kernel'])


def test_first_order_equals_the_query_gradient_at_the_adapted_theta():
  """Hand-derived: with stopped inner gradients, d theta_S / d theta_0 = I, so the meta-gradient
  of theta_0 is dL_query/dtheta evaluated at theta_S (and differs from second order)."""
  episode = helpers.random_episode(metabatch=1)
  first, second = helpers.tiny_learner('fomaml'), helpers.tiny_learner('metadrop')
  theta = lambda learner: list(learner.network.theta.values())
  fo, so = _gradients(first, episode, theta(first)), _gradients(second, episode, theta(second))
  theta_s = first.adapt(episode.support_x[0], episode.support_y[0],
                        seeds_lib.fold_seed(SEED, 0), MC)[-1]
  with tf.GradientTape() as tape:
    tape.watch(theta_s)
    loss = objectives.cross_entropy(first.predict(theta_s, episode.query_x[0]),
                                      episode.query_y[0])
  by_hand = tape.gradient(loss, theta_s)
  for name, g in zip(first.network.theta, fo):
    np.testing.assert_allclose(g, by_hand[name], rtol=1e-10, atol=1e-14)
  kernel = list(first.network.theta).index('conv1_kernel')
  assert np.abs(fo[kernel] - so[kernel]).max() > 1e-3 * np.abs(so[kernel]).max()


def _plain_maml_logits(x, w, beta):
  """A MAML conv-4 forward written out with raw TF ops (independent of metadrop_tf.nets.layers)."""
  h = x
  for b in range(4):
    h = tf.nn.conv2d(h, w[f'conv{b}_kernel'], 1, 'SAME') + w[f'conv{b}_bias']
    mean = tf.reduce_mean(h, [0, 1, 2])
    var = tf.reduce_mean((h - mean) ** 2, [0, 1, 2])
    h = tf.nn.max_pool2d(tf.nn.relu((h - mean) / tf.sqrt(var + 1e-3) + beta[f'bn{b}']),
                         2, 2, 'VALID')
  return tf.reshape(h, [x.shape[0], -1]) @ w['dense_kernel'] + w['dense_bias']


def test_maml_equals_plain_maml_written_by_hand_for_one_step():
  learner = helpers.tiny_learner('maml', n_steps=1, inner_lr=0.3)
  ep = helpers.random_episode(metabatch=1)
  theta0, beta = learner.network.theta, learner.network.beta
  with tf.GradientTape() as outer:
    with tf.GradientTape() as inner:
      support_loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
          ep.support_y[0], _plain_maml_logits(ep.support_x[0], theta0, beta)))
    grads = inner.gradient(support_loss, theta0)
    fast = {k: theta0[k] - 0.3 * grads[k] for k in theta0}
    query_loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
        ep.query_y[0], _plain_maml_logits(ep.query_x[0], fast, beta)))
  expected = outer.gradient(query_loss, learner.meta_variables())
  got = _gradients(learner, ep, learner.meta_variables())
  np.testing.assert_allclose(float(_meta_loss(learner, ep)), float(query_loss), rtol=1e-12)
  for e, g in zip(expected, got):
    np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize('name, n_steps', [('metadrop', 40), ('maml', 5)])
def test_adaptation_lowers_the_support_loss_and_never_assigns(name, n_steps):
  """Metadrop's noise at init (softplus(N(0,1)) factors, logit noise 0.69) slows adaptation."""
  learner = helpers.tiny_learner(name, n_steps=n_steps, inner_lr=0.5, channels=4)
  ep = helpers.random_episode(metabatch=1, shot=2)
  states = learner.adapt(ep.support_x[0], ep.support_y[0], SEED, mc_samples=4)
  assert len(states) == n_steps + 1
  losses = [float(objectives.cross_entropy(learner.predict(s, ep.support_x[0]),
                                             ep.support_y[0])) for s in (states[0], states[-1])]
  assert losses[1] < losses[0] - 0.2, losses
  for name_, v in learner.network.theta.items():
    np.testing.assert_array_equal(v.numpy(), states[0][name_])


def test_meta_objective_averages_the_tasks():
  learner = helpers.tiny_learner('metadrop')
  ep = helpers.random_episode(metabatch=2)
  both = learner.meta_objective(ep, SEED, mc_samples=MC)
  single = [learner.task_outputs(ep.support_x[b], ep.support_y[b], ep.query_x[b],
                                 ep.query_y[b], seeds_lib.fold_seed(SEED, b), MC)
            for b in range(2)]
  assert set(both) == {'loss', 'acc'}
  for key in both:
    np.testing.assert_allclose(both[key], (single[0][key] + single[1][key]) / 2, rtol=1e-6)
  pre = learner.mean_pre_adaptation_outputs(ep)
  first = objectives.cross_entropy(learner.network(ep.query_x[0]), ep.query_y[0])
  second = objectives.cross_entropy(learner.network(ep.query_x[1]), ep.query_y[1])
  np.testing.assert_allclose(pre['loss_pre'], (first + second) / 2, rtol=1e-6)


def test_fast_float32_path_matches_the_reference_path(monkeypatch):
  """float32 runs the fused batch norm; its loss and meta-gradients at 1 inner step must match
  the written-out reference statistics (float32 tolerance; more steps are ill-conditioned)."""
  learner = helpers.tiny_learner('metadrop', dtype='float32', channels=6, way=4, n_steps=1,
                                 inner_lr=0.3)
  ep = helpers.random_episode(metabatch=2, way=4, shot=2, query=2, dtype=np.float32)

  def loss_and_grads():
    with tf.GradientTape() as tape:
      loss = learner.meta_objective(ep, SEED, mc_samples=3)['loss']
    return [loss] + tape.gradient(loss, learner.meta_variables())

  fast = loss_and_grads()
  monkeypatch.setattr(layers, 'batch_norm', layers.batch_norm_reference)
  reference = loss_and_grads()
  for f, r in zip(fast, reference):
    np.testing.assert_allclose(f, r, rtol=1e-3, atol=1e-5 * np.abs(r).max())


class _Reptile(gradient.GradientLearner):
  """A learner with another outer update (Reptile: theta_0 - theta_S as the 'gradient'),
  written without touching the training loop."""

  def meta_gradients(self, episode, seed, iteration=None, first_task=0, total_tasks=None):
    del first_task, total_tasks  # one task per meta-batch, never distributed here
    state = self.adapt(episode.support_x[0], episode.support_y[0], seed)[-1]
    grads = [self.network.theta[n] - state[n] if n in state else tf.zeros_like(v)
             for n, v in zip(list(self.network.theta) + list(self.network.beta),
                             self.meta_variables())]
    return {'loss': tf.constant(0.0, self.dtype), 'acc': tf.constant(0.0)}, grads


def test_a_learner_with_its_own_outer_update_trains_through_the_same_loop():
  network = helpers.tiny_model(noisy=False, dtype='float32')
  learner = _Reptile(network, 2, 0.2)
  config = helpers.tiny_config(meta_optimizer='sgd', meta_momentum=0.0, meta_lr=0.5,
                               grad_clip=100.0)
  step = train_step.make_outer_step(learner, train_step.make_optimizer(learner, config), config)
  episode = helpers.random_episode(metabatch=1, dtype=np.float32)
  before = {n: v.numpy().copy() for n, v in network.theta.items()}
  target = learner.adapt(episode.support_x[0], episode.support_y[0],
                         seeds_lib.fold_seed(tf.constant([0, 0]), 0))[-1]
  step(episode, tf.constant(0, tf.int64), tf.constant(False))
  for name, value in network.theta.items():  # halfway to the adapted weights
    np.testing.assert_allclose(value.numpy(), before[name] + 0.5 * (target[name] - before[name]),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('name, options', [('metadrop', {}), ('maml', {}),
                                           ('metasgd', {'meta_dropout': True}),
                                           ('maml', {'lslr': True}),
                                           ('maml', dict(PER_STEP, lslr=True))])
def test_gradient_checkpointing_gives_the_same_meta_gradient(name, options):
  """tf.recompute_grad is built on custom_gradient: its second order is tested, not assumed."""
  episode = helpers.random_episode(metabatch=1)
  plain = helpers.tiny_learner(name, **options)
  recomputed = helpers.tiny_learner(name, checkpointing=True, **options)
  expected = _gradients(plain, episode, plain.meta_variables())
  got = _gradients(recomputed, episode, recomputed.meta_variables())
  assert len(got) == len(expected)
  for e, g in zip(expected, got):
    np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-14)
  _check_against_finite_differences(recomputed, helpers.random_episode(metabatch=1),
                                    recomputed.network.theta['conv1_kernel'])
  if plain.noisy:
    _check_against_finite_differences(recomputed, helpers.random_episode(metabatch=1),
                                      recomputed.network.phi['conv0_kernel'])


@pytest.mark.slow
@pytest.mark.parametrize('name, options, kept', [('metadrop', {}, 1),
                                                 ('maml', dict(PER_STEP, lslr=True), 2)])
def test_gradient_checkpointing_keeping_the_last_steps_gives_the_same_meta_gradient(
    name, options, kept):
  """--checkpoint_kept_steps: 3 steps, the first 3 - kept recomputed (a loop of 2, or one
  unrolled step), the rest kept; traced, as training runs it."""
  episode = helpers.random_episode(metabatch=1)
  plain = helpers.tiny_learner(name, n_steps=3, **options)
  mixed = helpers.tiny_learner(name, n_steps=3, checkpointing=True, kept_steps=kept, **options)
  expected = _gradients(plain, episode, plain.meta_variables())
  got = tf.function(lambda: _gradients(mixed, episode, mixed.meta_variables()),
                    autograph=False)()
  for e, g in zip(expected, got):
    np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-14)


def _graph_ops(function) -> int:
  """Ops of a traced function's graph and of every function in its library."""
  graph_def = function.get_concrete_function().graph.as_graph_def()
  return len(graph_def.node) + sum(len(f.node_def) for f in graph_def.library.function)


@pytest.mark.slow
def test_gradient_checkpointing_traces_a_loop_whose_graph_does_not_grow_with_the_steps():
  episode = helpers.random_episode(metabatch=1)
  ops = {}
  for checkpointing, kept in ((False, 0), (True, 0), (True, 1)):
    for n_steps in (3, 4):
      learner = helpers.tiny_learner('metadrop', n_steps=n_steps, checkpointing=checkpointing,
                                     kept_steps=kept)
      ops[checkpointing, kept, n_steps] = _graph_ops(tf.function(
          lambda learner=learner: _gradients(learner, episode, learner.meta_variables()),
          autograph=False))
  assert ops[True, 0, 3] == ops[True, 0, 4]
  assert ops[True, 1, 3] == ops[True, 1, 4]  # the loop, then one kept step
  assert ops[False, 0, 4] > ops[False, 0, 3] + 1000
  assert ops[True, 0, 4] < ops[True, 1, 4] < ops[False, 0, 4]


@pytest.mark.parametrize('name, options, iterations', [
    # A bool tensor switches the order inside the loop: first order at 1, second order at 5.
    ('maml', {'first_order_iters': 3}, (1, 5)),
    # The penalties read phi and the offsets: inside the loop as the pinned tensors.
    ('metadrop', {'noise_type': 'vib'}, (1,)),
    ('metadrop', dict(PER_STEP, noise_type='info_dropout'), (1,)),
])
@pytest.mark.slow
def test_gradient_checkpointing_with_schedules_and_penalties(name, options, iterations):
  episode = helpers.random_episode(metabatch=1)
  plain = helpers.tiny_learner(name, n_steps=3, **options)
  recomputed = helpers.tiny_learner(name, n_steps=3, checkpointing=True, **options)
  for iteration in (tf.constant(i, tf.int64) for i in iterations):
    expected = _gradients(plain, episode, plain.meta_variables(), iteration)
    got = tf.function(lambda it, r=recomputed: _gradients(r, episode, r.meta_variables(), it),
                      autograph=False)(iteration)
    for e, g in zip(expected, got):
      np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-14)


def test_looped_adaptation_ends_on_the_unrolled_state():
  episode = helpers.random_episode(metabatch=1)
  learner = helpers.tiny_learner('metasgd', meta_dropout=True, n_steps=4, checkpointing=True)
  args = (episode.support_x[0], episode.support_y[0], tf.constant([3, 4]))
  unrolled = learner.adapt(*args)
  looped = learner.adapt(*args, last_only=True)
  assert len(unrolled) == 5 and len(looped) == 2
  for name, value in unrolled[-1].items():
    np.testing.assert_allclose(looped[-1][name], value, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize('mc_samples, sizes', [(6, (2, 2, 2)), (4, (2, 1, 1))])
def test_chunked_monte_carlo_step_is_the_mean_of_each_chunks_own_gradient(mc_samples, sizes):
  """--test_mc_chunks: M samples in K chunks of about M / K, chunk c drawn from its own seed
  (sizes differing by one when K does not divide M, as in the monitoring evaluation)."""
  episode = helpers.random_episode(metabatch=1)
  x, y = episode.support_x[0], episode.support_y[0]
  seed = tf.constant([3, 4])
  learner = helpers.tiny_learner('metadrop', n_steps=1, mc_chunks=3)
  adapted = learner.adapt(x, y, seed, mc_samples=mc_samples)[-1]
  theta = learner.network.initial_theta()
  step_seed = seeds_lib.fold_seed(seed, 0)
  grads = []
  for c, copies in enumerate(sizes):
    with tf.GradientTape() as tape:
      tape.watch(theta)
      logits = learner.network(x, theta=theta, sample=True, copies=copies,
                               seed=seeds_lib.fold_seed(step_seed, seeds_lib.MC_CHUNK, c))
      loss = objectives.cross_entropy(logits, tf.tile(y, [copies, 1]))
    grads.append({n: g * copies / mc_samples for n, g in tape.gradient(loss, theta).items()})
  for name, value in theta.items():
    expected = value - learner.inner_lr * sum(g[name] for g in grads)
    np.testing.assert_allclose(adapted[name], expected, rtol=1e-12, atol=1e-14)
  one_pass = helpers.tiny_learner('metadrop', n_steps=1).adapt(x, y, seed, mc_samples=mc_samples)
  assert not np.allclose(one_pass[-1]['conv1_kernel'], adapted['conv1_kernel'])


# --- batch-norm modes ----------------------------------------------------------------------
def _predictions_alone_and_in_batches(learner):
  """Logits of query image 0 predicted alone, with the other images of its class, and with
  the whole mixed query set, after adaptation on the support."""
  episode = helpers.random_episode(metabatch=1, way=3, shot=2, query=3)
  state = learner.adapt(episode.support_x[0], episode.support_y[0], SEED)[-1]
  query = episode.query_x[0]  # class by class: images 0, 1, 2 are class 0
  return (learner.predict(state, query[:1])[0], learner.predict(state, query[:3])[0],
          learner.predict(state, query)[0])


@pytest.mark.parametrize('name, options', [('maml', {'bn_mode': 'inductive'}),
                                           ('metadrop', {'bn_mode': 'inductive'}),
                                           ('metadrop', PER_STEP)])
def test_inductive_query_predictions_do_not_depend_on_the_other_query_images(name, options):
  alone, with_class, mixed = _predictions_alone_and_in_batches(
      helpers.tiny_learner(name, **options))
  np.testing.assert_allclose(with_class, alone, rtol=1e-12, atol=1e-14)
  np.testing.assert_allclose(mixed, alone, rtol=1e-12, atol=1e-14)


def test_transductive_query_predictions_depend_on_the_batch():
  """The reference's mode normalizes the query with its own statistics: the test above could
  fail."""
  alone, with_class, mixed = _predictions_alone_and_in_batches(helpers.tiny_learner('maml'))
  assert not np.allclose(with_class, mixed)


def test_inductive_statistics_are_the_supports_under_the_adapted_weights():
  learner = helpers.tiny_learner('maml', bn_mode='inductive')
  episode = helpers.random_episode(metabatch=1, shot=2)
  states = learner.adapt(episode.support_x[0], episode.support_y[0], SEED)
  assert batch_norm.STATISTICS not in states[0] and batch_norm.STATISTICS in states[-1]
  # Normalizing the support with its own statistics is transductive batch norm on it.
  support = episode.support_x[0]
  np.testing.assert_allclose(learner.predict(states[-1], support),
                             learner.network(support, theta=states[-1]), rtol=1e-10, atol=1e-12)


def test_per_step_offsets_are_used_step_by_step():
  learner = helpers.tiny_learner('maml', **PER_STEP)
  assert not any(id(v) in {id(b) for b in learner.network.beta.values()}
                 for v in learner.meta_variables())  # the network's offsets are unused
  assert learner.offsets.bnstep_bn0.shape == (3,) + tuple(learner.network.beta['bn0'].shape)
  episode = helpers.random_episode(metabatch=1)
  before = learner.meta_objective(episode, SEED)['loss']
  learner.offsets.bnstep_bn2.assign(learner.offsets.bnstep_bn2 + tf.constant(
      [[0.0, 0.0], [0.0, 0.0], [0.5, -0.5]], tf.float64))  # only the last step's
  states = learner.adapt(episode.support_x[0], episode.support_y[0], SEED)
  np.testing.assert_array_equal(states[-1][batch_norm.OFFSETS]['bn2'], [0.5, -0.5])
  assert float(learner.meta_objective(episode, SEED)['loss']) != float(before)


@pytest.mark.slow
def test_running_statistics_are_averaged_by_training_and_normalize_the_query():
  network = helpers.tiny_model(noisy=False)
  network.track_running_statistics()
  learner = learners.REGISTRY['maml'](network, 2, 0.2, bn_mode='running')
  config = helpers.tiny_config(meta_optimizer='sgd', meta_momentum=0.0, meta_lr=0.5)
  step = train_step.make_outer_step(learner, train_step.make_optimizer(learner, config), config)
  episode = helpers.random_episode(metabatch=2)
  expected = [network.batch_statistics(episode.support_x[b]) for b in range(2)]
  step(episode, tf.constant(0, tf.int64), tf.constant(False))
  m = batch_norm.RUNNING_MOMENTUM
  for (mean, var), first, second in zip(network.running_statistics(), *expected):
    np.testing.assert_allclose(mean, m * (first[0] + second[0]) / 2, rtol=1e-10)
    np.testing.assert_allclose(var, (1 - m) + m * (first[1] + second[1]) / 2, rtol=1e-10)
  alone, with_class, mixed = _predictions_alone_and_in_batches(learner)
  np.testing.assert_allclose(mixed, alone, rtol=1e-12, atol=1e-14)
  state = learner.adapt(episode.support_x[0], episode.support_y[0], SEED)[-1]
  for (mean, var), (r_mean, r_var) in zip(state[batch_norm.STATISTICS],
                                          network.running_statistics()):
    np.testing.assert_array_equal(mean, r_mean)
  helpers.check_against_finite_differences(learner, helpers.random_episode(metabatch=1),
                                           network.theta['conv1_kernel'])


def test_fixed_noise_trains_no_noise_generator():
  learner = helpers.tiny_learner('metadrop', noise_type='fixed_mult', noise_scale=0.3)
  phi = {id(v) for v in learner.network.phi.values()}
  assert not phi & {id(v) for v in learner.meta_variables()}
  assert learner.network.noise_scales(helpers.random_episode().query_x[0]) == {}
  learned = helpers.tiny_learner('metadrop', noise_type='learned_add')
  assert phi.isdisjoint({id(v) for v in learned.meta_variables()})  # other variables
  assert {id(v) for v in learned.network.phi.values()} <= {
      id(v) for v in learned.meta_variables()}


@pytest.mark.slow
def test_mixup_mixes_the_support_and_its_labels_as_drawn():
  """Input mixup at a step equals MAML's step on the hand-mixed support; the manifold draws
  cover the input and the hidden layers; lam follows Beta(alpha, alpha)."""
  mixed = helpers.tiny_learner('maml', n_steps=1, mixup='input')
  plain = helpers.tiny_learner('maml', n_steps=1)
  episode = helpers.random_episode(1, shot=2)
  x, y = episode.support_x[0], episode.support_y[0]
  step_seed = seeds_lib.fold_seed(SEED, 0)
  mixing = mixed.mixing(step_seed, x)
  assert int(mixing.layer) == 0 and sorted(mixing.perm.numpy()) == list(range(len(x)))
  lam = tf.cast(mixing.lam, x.dtype)
  got = mixed.adapt(x, y, SEED)[-1]
  want = plain.inner_step(plain.initial_state(), {}, plain.network.read_phi(),
                          layers.mix(x, lam, mixing.perm), layers.mix(y, lam, mixing.perm),
                          step_seed, 1, 0, False)[0]
  for name in want:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-12)
  manifold = helpers.tiny_learner('maml', mixup='manifold', mixup_alpha=0.5)
  draws = [manifold.mixing(seeds_lib.fold_seed(SEED, i), x) for i in range(400)]
  assert {int(d.layer) for d in draws} == set(range(manifold.network.mixable_layers))
  lams = np.array([float(d.lam) for d in draws])
  assert abs(lams.mean() - 0.5) < 0.05 and abs(lams.var() - 0.125) < 0.025  # Beta(.5, .5)


def test_manifold_mixup_mixes_the_input_of_the_chosen_block():
  network = helpers.tiny_model(noisy=False)
  x = helpers.random_episode(1, shot=2).support_x[0]
  perm = tf.constant([3, 0, 2, 1, 5, 4])
  lam = tf.constant(0.7, tf.float64)
  outputs = network.block_outputs(x)
  mixed = network.block_outputs(x, mix=layers.Mixing(tf.constant(2), lam, perm))
  for b in range(2):  # before the mixed layer: unchanged
    np.testing.assert_allclose(mixed[b], outputs[b], rtol=1e-12)
  theta, beta = network.initial_theta(), network.beta
  h = layers.mix(outputs[1], lam, perm)
  for b in (2, 3):
    h = layers.conv_block(h, theta[f'conv{b}_kernel'], theta[f'conv{b}_bias'], beta[f'bn{b}'])
    np.testing.assert_allclose(mixed[b], h, rtol=1e-10)


def test_information_dropout_penalty_is_the_mean_kl_and_enters_the_inner_loss():
  learner = helpers.tiny_learner('metadrop', noise_type='info_dropout', noise_penalty=0.5)
  network = learner.network
  x = helpers.random_episode(1).support_x[0]
  scales = network.noise_scales(x)
  expected = np.mean([np.mean(-np.log(scales[f'block{b}'].numpy())) for b in range(4)])
  np.testing.assert_allclose(network.noise_penalty(x), expected, rtol=1e-12)
  assert 'logit_sigma' in scales and float(network.noise_penalty(x)) > 0.3
  episode = helpers.random_episode(1)
  args = (episode.support_x[0], episode.support_y[0], SEED)
  free = helpers.tiny_learner('metadrop', noise_type='info_dropout', noise_penalty=0.0)
  with_penalty, without = learner.adapt(*args)[-1], free.adapt(*args)[-1]
  assert np.abs(with_penalty['conv1_kernel'] - without['conv1_kernel']).max() > 1e-8
  assert float(helpers.tiny_learner('metadrop').network.noise_penalty(x)) == 0.0


def test_vib_draws_noise_on_the_features_only_and_its_penalty_is_the_gaussian_kl():
  vib = helpers.tiny_model(noise_type='vib')
  plain = helpers.tiny_model(noisy=False)
  x = helpers.random_episode(1).support_x[0]
  np.testing.assert_allclose(vib(x), plain(x), rtol=1e-12)  # deterministic: the mean
  np.testing.assert_allclose(vib.block_outputs(x, sample=True, seed=SEED)[-1],
                             plain.block_outputs(x)[-1], rtol=1e-12)  # blocks: no noise
  seed = tf.constant([1, 2])
  assert np.abs(vib(x, sample=True, seed=seed) - vib(x)).max() > 1e-6
  mean = vib.features(x).numpy()
  sigma = vib.noise_scales(x)['vib_sigma'].numpy()
  kl = 0.5 * (mean ** 2 + sigma ** 2 - 1) - np.log(sigma)
  np.testing.assert_allclose(vib.noise_penalty(x), kl.mean(), rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize('noise_type', sorted(noise_lib.REGISTRY))
def test_every_noise_type_trains_exactly_the_variables_it_uses(noise_type):
  """A traced training step runs (no variable without a gradient) and moves every trained
  variable."""
  config = helpers.tiny_config(noise_type=noise_type, meta_lr=0.05, metabatch=1)
  learner = learners.build(config)
  step = train_step.make_outer_step(learner, train_step.make_optimizer(learner, config), config)
  before = [v.numpy().copy() for v in learner.meta_variables()]
  episode = helpers.random_episode(metabatch=1, dtype=np.float32, image_shape=(28, 28, 1))
  step(episode, tf.constant(0, tf.int64), tf.constant(False))
  for variable, old in zip(learner.meta_variables(), before):
    assert np.abs(variable.numpy() - old).max() > 0, variable.path


def test_checkpointing_options_reach_the_learner_from_the_config():
  config = helpers.tiny_config(gradient_checkpointing=True, checkpoint_kept_steps=2)
  learner = learners.build(config)
  assert learner.checkpointing and learner.kept_steps == 2
