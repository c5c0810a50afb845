"""Tests of the Meta-learner LSTM (learners/metalstm.py): the preprocessing, plain SGD when the
gates are fixed, finite-difference meta-gradients (float64), truncation, and its batch norm."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

import helpers
from metadrop_tf import config as config_lib
from metadrop_tf import learners
from metadrop_tf.learners import metalstm

TRAINING = tf.constant(0, tf.int64)  # an iteration: training mode (batch statistics)


def _learner(n_steps=2, truncate=True, seed=0):
  network = helpers.tiny_model(noisy=False, dtype='float64', seed=seed)
  return metalstm.MetaLSTM(network, n_steps, truncate=truncate, seed=seed)


def test_preprocessing_follows_andrychowicz():
  p = metalstm.PREPROCESS_P
  x = np.array([3.0, -0.2, 1e-3, -1e-6, 0.0, 2e-5])
  out = metalstm.preprocess(tf.constant(x)).numpy()
  for value, (first, second) in zip(x, out):
    if abs(value) >= math.exp(-p):
      np.testing.assert_allclose([first, second], [math.log(abs(value)) / p, np.sign(value)])
    else:
      np.testing.assert_allclose([first, second], [-1.0, math.exp(p) * value])


def test_fixed_gates_perform_plain_sgd():
  """Forget gate 1 and input gate = a learning rate: c_t = c_{t-1} - rate * g_t, i.e. MAML's
  inner SGD with that rate."""
  rate = 0.3
  learner = _learner(n_steps=3)
  own = learner.own
  own.forget_kernel.assign(tf.zeros_like(own.forget_kernel))
  own.forget_bias.assign([60.0])  # sigmoid(60) is 1 in float64
  own.input_kernel.assign(tf.zeros_like(own.input_kernel))
  own.input_bias.assign([math.log(rate / (1 - rate))])
  maml = learners.REGISTRY['maml'](learner.network, 3, rate)
  episode = helpers.random_episode(1)
  args = (episode.support_x[0], episode.support_y[0], tf.constant([0, 0]))
  got, expected = learner.adapt(*args, iteration=TRAINING), maml.adapt(*args)
  assert len(got) == len(expected) == 4
  for a, b in zip(got, expected):
    for name in b:
      np.testing.assert_allclose(a[name], b[name], rtol=1e-10, atol=1e-12)
  assert np.abs(got[-1]['conv0_kernel'] - got[0]['conv0_kernel']).max() > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize('name', ['lstm_kernel', 'lstm_bias', 'forget_kernel', 'input_kernel',
                                  'forget_bias', 'input_bias'])
def test_meta_gradients_of_its_own_weights_match_finite_differences(name):
  learner = _learner(truncate=False)
  helpers.check_against_finite_differences(learner, helpers.random_episode(2),
                                           getattr(learner.own, name), TRAINING)


@pytest.mark.parametrize('name', ['conv0_kernel', 'dense_bias'])
def test_meta_gradients_of_the_initialization_match_finite_differences(name):
  learner = _learner(truncate=False)
  helpers.check_against_finite_differences(learner, helpers.random_episode(2),
                                           learner.network.theta[name], TRAINING)


def test_truncation_drops_only_the_paths_through_the_gradient_inputs():
  episode = helpers.random_episode(2)
  full, cut = _learner(truncate=False), _learner(truncate=True)
  pick = lambda lrn: [lrn.network.theta['conv1_kernel'], lrn.own.input_bias]
  a = helpers.meta_gradients(full, episode, pick(full), TRAINING)
  b = helpers.meta_gradients(cut, episode, pick(cut), TRAINING)
  for g_full, g_cut in zip(a, b):
    assert np.abs(g_cut).max() > 0 and np.abs(g_full - g_cut).max() > 1e-9


def test_meta_test_predictions_use_running_support_statistics():
  """Outside training a query image's prediction depends on it alone; in training the query
  batch is normalized with its own statistics."""
  learner = _learner()
  episode = helpers.random_episode(1, query=3)
  sx, sy, qx = episode.support_x[0], episode.support_y[0], episode.query_x[0]
  state = learner.adapt(sx, sy, tf.constant([0, 0]))[-1]
  assert metalstm.STATISTICS in state
  batch = learner.predict(state, qx)
  for i in range(len(qx)):
    np.testing.assert_allclose(learner.predict(state, qx[i:i + 1])[0], batch[i], rtol=1e-10)
  trained = learner.adapt(sx, sy, tf.constant([0, 0]), iteration=TRAINING)[-1]
  assert metalstm.STATISTICS not in trained
  one = learner.predict(trained, qx[:1])[0]
  assert np.abs(one - learner.predict(trained, qx)[0]).max() > 1e-6


def test_running_statistics_follow_the_momentum_from_a_reset():
  learner = _learner(n_steps=2)
  episode = helpers.random_episode(1)
  sx, sy = episode.support_x[0], episode.support_y[0]
  states = learner.adapt(sx, sy, tf.constant([0, 0]))
  m = metalstm.BN_MOMENTUM
  first = learner.network.batch_statistics(sx, states[0])[0]
  second = learner.network.batch_statistics(sx, states[1])[0]
  mean, variance = states[-1][metalstm.STATISTICS][0]
  np.testing.assert_allclose(mean, (1 - m) * (m * first[0]) + m * second[0], rtol=1e-10)
  np.testing.assert_allclose(variance, (1 - m) * ((1 - m) + m * first[1]) + m * second[1],
                             rtol=1e-10)


@pytest.mark.parametrize('changes, words', [
    ({'first_order': True}, '`first_order=True` does not apply to `learner=metalstm`'),
    ({'zero_head': True}, '`zero_head=True` does not apply'),
])
def test_settings_it_has_no_use_for_are_one_line(changes, words):
  with pytest.raises(config_lib.ConfigError, match=words):
    learners.check(helpers.tiny_config(learner='metalstm', **changes))


@pytest.mark.slow
def test_the_miniimagenet_config_trains_and_evaluates_on_synthetic_shards(tmp_path):
  """The paper's settings (configs/mimgnet_5shot_metalstm.cfg; the 1-shot file differs only in
  --shot and --n_steps, and tests/test_components.py checks every committed flagfile) on
  miniImageNet-shaped fake shards: two iterations (of two updates, to stay quick), then the
  meta-test protocol."""
  data_dir, savedir = str(tmp_path / 'data'), str(tmp_path / 'run')
  helpers.write_tiny_shards(data_dir, classes=(6, 5), instances=20, size=84, channels=3)
  config = f'{helpers.REPO}/configs/mimgnet_5shot_metalstm.cfg'
  assert helpers.run_program('train', f'--flagfile={config}', f'--data_dir={data_dir}',
                             f'--savedir={savedir}', '--n_train_iters=2', '--n_steps=2',
                             '--eval_freq=2', '--eval_batches=1', '--save_freq=2') == 0
  assert helpers.run_program('evaluate', f'--savedir={savedir}', '--n_test_iters=2') == 0
  with open(f'{savedir}/eval_test.json') as f:
    result = json.load(f)
  with open(f'{savedir}/config.json') as f:
    saved = json.load(f)
  assert (saved['learner'], saved['shot'], saved['way'], saved['grad_clip']) == (
      'metalstm', 5, 5, 0.25)
  assert len(result['per_episode_accuracy']) == 2 and 0 <= result['accuracy'] <= 100
