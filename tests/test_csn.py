"""Tests of Conditionally Shifted Neurons (learners/csn.py): zero values are the plain
network, attention, the direct-feedback information, and second-order meta-gradients against
finite differences (float64) on the MLP (regression) and conv-4 (classification)."""

import numpy as np
import pytest
import tensorflow as tf

import helpers
from metadrop_tf import config as config_lib
from metadrop_tf import learners
from metadrop_tf import objectives
from metadrop_tf.episodes import sampling
from metadrop_tf.episodes import sinusoid
from metadrop_tf.learners import csn
from metadrop_tf.nets import mlp


def _mlp_learner(seed=0, **options):
  network = mlp.MLP(1, (1,), (6, 5), noisy=False, dtype='float64', seed=seed)
  rng = np.random.default_rng(seed)
  for variable in network.variables:
    variable.assign(rng.normal(0, 0.6, variable.shape))
  learner = csn.CSN(network, objective=objectives.REGRESSION, key_dim=4, value_hidden=3,
                    **options)
  for variable in learner.own.variables:  # the zero-initialized value outputs too
    variable.assign(rng.normal(0, 0.5, variable.shape))
  return learner


def _conv_learner(seed=0):
  network = helpers.tiny_model(noisy=False, dtype='float64', seed=seed)
  learner = csn.CSN(network, key_dim=4, value_hidden=3)
  rng = np.random.default_rng(seed)
  for variable in learner.own.variables:
    variable.assign(rng.normal(0, 0.5, variable.shape))
  return learner


def _sinusoid_episode(metabatch=2, shot=3, query=4):
  parts = sinusoid.SinusoidSampler(shot, query, seed=0, split='train').meta_batch(0, metabatch)
  return sampling.Episode(*[tf.constant(p, tf.float64) for p in parts])


def _zero_values(learner):
  for name in learner.own.layer_names:
    for part in ('kernel', 'bias'):
      getattr(learner.own, f'value_{name}_2_{part}').assign(
          tf.zeros_like(getattr(learner.own, f'value_{name}_2_{part}')))


@pytest.mark.parametrize('make', [_mlp_learner, _conv_learner])
def test_zero_values_leave_the_plain_network(make):
  learner = make()
  if isinstance(learner.network, mlp.MLP):
    sx, sy, qx, _ = _sinusoid_episode(1)
  else:
    episode = helpers.random_episode(1)
    sx, sy, qx = episode.support_x, episode.support_y, episode.query_x
  state = learner.adapt(sx[0], sy[0], tf.constant([0, 0]))[-1]
  assert np.abs(learner.predict(state, qx[0]) - learner.network(qx[0])).max() > 1e-6
  _zero_values(learner)
  state = learner.adapt(sx[0], sy[0], tf.constant([0, 0]))[-1]
  np.testing.assert_allclose(learner.predict(state, qx[0]), learner.network(qx[0]),
                             rtol=1e-12, atol=1e-12)


def test_attention_is_a_softmax_of_cosine_similarities():
  rng = np.random.default_rng(0)
  queries, keys = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
  cosine = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
      keys / np.linalg.norm(keys, axis=1, keepdims=True)).T
  expected = np.exp(cosine) / np.exp(cosine).sum(axis=1, keepdims=True)
  np.testing.assert_allclose(csn.attention(tf.constant(queries), tf.constant(keys)), expected,
                             rtol=1e-12)
  one = csn.attention(tf.constant(queries), tf.constant(keys[:1])).numpy()
  np.testing.assert_array_equal(one, np.ones((5, 1)))


def test_a_single_support_example_shifts_every_query_by_its_values():
  learner = _mlp_learner()
  sx, sy, qx, _ = [t[0] for t in _sinusoid_episode(1, shot=1)]
  state = learner.adapt(sx, sy, tf.constant([0, 0]))[-1]
  shifts = learner.shifts(state, qx)
  for name, values in state[csn.VALUES].items():
    np.testing.assert_allclose(shifts[name], np.tile(values.numpy(), (len(qx), 1)), rtol=1e-12)


def test_information_is_each_support_examples_own_gradient():
  """MLP (no batch norm): example i's information is the gradient of its loss alone; the
  head's is the direct feedback 2 (y_hat - y) of the squared error."""
  learner = _mlp_learner()
  sx, sy, _, _ = [t[0] for t in _sinusoid_episode(1, shot=3)]
  theta = learner.initial_state()
  info = learner.information(theta, sx, sy)
  for i in range(3):
    single = learner.information(theta, sx[i:i + 1], sy[i:i + 1])
    for name in info:
      np.testing.assert_allclose(info[name][i], single[name][0], rtol=1e-12, atol=1e-14)
  np.testing.assert_allclose(info['dense'], 2 * (learner.network(sx) - sy), rtol=1e-12)


def test_classification_direct_feedback_of_the_logits_is_softmax_minus_labels():
  learner = _conv_learner()
  episode = helpers.random_episode(1)
  sx, sy = episode.support_x[0], episode.support_y[0]
  info = learner.information(learner.initial_state(), sx, sy)
  np.testing.assert_allclose(info['dense'], tf.nn.softmax(learner.network(sx)) - sy,
                             rtol=1e-10, atol=1e-12)
  assert info['conv0'].shape == (sx.shape[0], learner.network.channels)


@pytest.mark.parametrize('make, names', [
    (_mlp_learner, ('dense0_kernel', 'dense_bias', 'key_dense0_kernel', 'key_out_kernel',
                    'value_dense0_0_kernel', 'value_dense1_2_kernel', 'value_dense_1_bias')),
    (_conv_learner, ('conv1_kernel', 'dense_kernel', 'key_conv0_kernel', 'key_out_bias',
                     'value_conv2_0_kernel', 'value_dense_2_kernel'))])
def test_meta_gradients_match_finite_differences(make, names):
  learner = make()
  if isinstance(learner.network, mlp.MLP):
    episode = _sinusoid_episode()
  else:
    episode = helpers.random_episode(2)
  variables = {**learner.network.theta, **{v.name: v for v in learner.own.variables}}
  for name in names:
    helpers.check_against_finite_differences(learner, episode, variables[name])


def test_first_order_drops_the_second_order_terms_only():
  learner, first = _mlp_learner(), _mlp_learner(first_order=True)
  episode = _sinusoid_episode()
  variables = lambda lrn: [lrn.network.theta['dense0_kernel'], lrn.own.value_dense0_0_kernel]
  full = helpers.meta_gradients(learner, episode, variables(learner))
  approx = helpers.meta_gradients(first, episode, variables(first))
  np.testing.assert_allclose(full[1], approx[1], rtol=1e-12)  # the value MLP: first order
  assert np.abs(full[0] - approx[0]).max() > 1e-8  # theta: through the information


@pytest.mark.parametrize('changes, words', [
    ({'lslr': True}, '`lslr=True` does not apply to `learner=csn`'),
    ({'bn_mode': 'inductive'}, '`bn_mode=inductive` does not apply'),
    ({'backbone': 'resnet12', 'channels': 0}, '`learner=csn` shifts conv-4 or MLP neurons'),
])
def test_settings_csn_has_no_use_for_are_one_line(changes, words):
  with pytest.raises(config_lib.ConfigError, match=words):
    learners.check(helpers.tiny_config(learner='csn', **changes))


def test_csn_builds_from_a_config_and_trains_its_own_variables():
  learner = learners.build(helpers.tiny_config(learner='csn'))
  own = {id(v) for v in learner.own.trainable_variables}
  assert own and own <= {id(v) for v in learner.meta_variables()}
  assert 'learner' in learner.trackables()
