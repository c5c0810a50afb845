"""The Meta-learner LSTM of "Optimization as a Model for Few-shot Learning" (Ravi & Larochelle,
ICLR 2017).

A coordinate-wise two-layer LSTM whose second layer's cell state IS the learner network's
parameters (every element of theta, flattened: P coordinates, all sharing the LSTM's weights):
  input x_t = [pre(L_t), pre(g_t)]  [P, 4]: the support loss and each coordinate's gradient,
            preprocessed as Andrychowicz et al. (2016) (preprocess)
  layer 1   an ordinary LSTM cell of HIDDEN units per coordinate: h_t [P, HIDDEN]
  layer 2   f_t = sigmoid([h_t, c_{t-1}, f_{t-1}] W_F + b_F), i_t = sigmoid([h_t, c_{t-1},
            i_{t-1}] W_I + b_I), c_t = f_t * c_{t-1} - i_t * g_t
  c_0       the learned initialization (the network's theta, meta-trained with the LSTM)
after T = --n_steps updates on the whole support set the query loss of c_T is the
meta-objective. As the paper, the gradient inputs are truncated: L_t and g_t are constants for
the meta-gradient (no second-order terms); MetaLSTM(truncate=False) differentiates through
them instead (the finite-difference test checks that full gradient).

Batch norm as the paper's learner and its PyTorch port use it: during meta-training every
forward normalizes with its batch's statistics (the query too); at meta-test (and serving)
the query is normalized with running statistics of the support batches seen during the T
updates (reset to mean 0, variance 1 per task, momentum BN_MOMENTUM toward each batch), so a
query image's prediction depends on it alone. The gates b_F ~ U[4, 6], b_I ~ U[-5, -4] start
the LSTM as gradient descent with a small rate, as the port does.
"""

import math
from typing import Optional

import keras
import tensorflow as tf

from metadrop_tf import config as config_lib
from metadrop_tf import learners
from metadrop_tf import objectives
from metadrop_tf.learners import base
from metadrop_tf.nets import network as network_lib

HIDDEN = 20  # units of the first LSTM layer (the paper's)
PREPROCESS_P = 10.0  # Andrychowicz et al.'s p
BN_MOMENTUM = 0.95  # weight of each support batch in the meta-test running statistics
STATISTICS = 'bn_statistics'  # an adapted state's running statistics (meta-test)


def preprocess(x: tf.Tensor, p: float = PREPROCESS_P) -> tf.Tensor:
  """[..., 2]: (log|x| / p, sign x) where |x| >= e^-p, else (-1, e^p x) (Andrychowicz et al.)."""
  big = tf.abs(x) >= math.exp(-p)
  first = tf.where(big, tf.math.log(tf.maximum(tf.abs(x), math.exp(-p))) / p, -tf.ones_like(x))
  second = tf.where(big, tf.sign(x), math.exp(p) * x)
  return tf.stack([first, second], axis=-1)


class MetaLSTMVariables(keras.Model):
  """The meta-learner's weights, shared by every coordinate: the first layer's LSTM cell
  (kernel [4 + HIDDEN, 4 * HIDDEN], gates i, f, g, o) and the second layer's W_F, W_I
  [HIDDEN + 2, 1], b_F, b_I [1]."""

  def __init__(self, dtype='float32', seed: int = 0, hidden: int = HIDDEN):
    super().__init__(dtype=dtype)
    self.hidden = hidden
    bound = 1.0 / math.sqrt(hidden)  # torch.nn.LSTMCell's initialization
    uniform = lambda low, high, k: keras.initializers.RandomUniform(low, high, seed=seed + k)
    specs = [('lstm_kernel', (4 + hidden, 4 * hidden), uniform(-bound, bound, 1)),
             ('lstm_bias', (4 * hidden,), uniform(-bound, bound, 2)),
             ('forget_kernel', (hidden + 2, 1), uniform(-0.01, 0.01, 3)),
             ('input_kernel', (hidden + 2, 1), uniform(-0.01, 0.01, 4)),
             ('forget_bias', (1,), uniform(4.0, 6.0, 5)),
             ('input_bias', (1,), uniform(-5.0, -4.0, 6))]
    for name, shape, init in specs:
      setattr(self, name, self.add_weight(shape=shape, initializer=init, name=name,
                                          dtype=dtype))
    self.built = True

  def first_layer(self, x: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """One LSTM step per coordinate: x [P, 4], h and c [P, HIDDEN] -> (h, c)."""
    z = tf.matmul(tf.concat([x, h], axis=1), self.lstm_kernel) + self.lstm_bias
    i, f, g, o = tf.split(z, 4, axis=1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    return tf.sigmoid(o) * tf.tanh(c), c

  def gates(self, h: tf.Tensor, c: tf.Tensor, f_prev: tf.Tensor,
            i_prev: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(f_t, i_t) [P, 1] from h [P, HIDDEN], the parameters c [P, 1] and the previous gates."""
    f = tf.sigmoid(tf.matmul(tf.concat([h, c, f_prev], axis=1), self.forget_kernel)
                   + self.forget_bias)
    i = tf.sigmoid(tf.matmul(tf.concat([h, c, i_prev], axis=1), self.input_kernel)
                   + self.input_bias)
    return f, i


@learners.register('metalstm')
class MetaLSTM(base.Learner):
  """The Meta-learner LSTM around a network (conv-4 in the paper; any backbone works).

  Args:
    network: the learner network (not noisy); its theta is the cell state.
    n_steps: T, updates on the support set.
    truncate: treat the loss and gradient inputs as constants (the paper's choice).
    objective, seed: the task's loss and metric; the LSTM's initializer seed.
  """

  def __init__(self, network, n_steps: int, truncate: bool = True,
               objective: objectives.Objective = objectives.CLASSIFICATION, seed: int = 0):
    super().__init__(network, n_steps, objective)
    if network.noisy:
      raise ValueError('`learner=metalstm` does not sample noise; drop `meta_dropout`')
    self.truncate = truncate
    self.own = MetaLSTMVariables(network.dtype, seed)

  @classmethod
  def from_config(cls, network: network_lib.Network, config: config_lib.Config) -> 'MetaLSTM':
    return cls(network, config.n_steps, objective=objectives.for_config(config),
               seed=config.seed)

  def initial_state(self, way: Optional[int] = None) -> dict:
    del way
    return self.network.initial_theta()

  def _support_loss_and_gradient(self, theta, x, y):
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(theta)
      loss = self.objective.loss(self.network(x, theta=theta), y)
    grads = tape.gradient(loss, theta)
    if self.truncate:
      loss = tf.stop_gradient(loss)
      grads = {name: tf.stop_gradient(g) for name, g in grads.items()}
    return loss, grads

  def adapt(self, support_x: tf.Tensor, support_y: tf.Tensor, seed: tf.Tensor, mc_samples: int = 1,
            start: Optional[dict] = None, iteration: tf.Tensor | None = None) -> list:
    """[theta_0, ..., theta_T]: the LSTM's T updates on the support set (seed and mc_samples
    unused: no noise). Outside training (iteration None) the last state also carries the
    running batch-norm statistics of the support batches (module docstring)."""
    del seed, mc_samples
    theta = self.initial_state() if start is None else start
    names = list(theta)
    shapes = [theta[name].shape for name in names]
    sizes = [int(s.num_elements()) for s in shapes]
    flat = lambda tensors: tf.concat([tf.reshape(tensors[n], [-1]) for n in names], axis=0)
    unflat = lambda c: {n: tf.reshape(part, s) for n, part, s in
                        zip(names, tf.split(c[:, 0], sizes), shapes)}
    coordinates = sum(sizes)
    c = flat(theta)[:, None]
    h1 = c1 = tf.zeros([coordinates, self.own.hidden], self.dtype)
    f_gate = i_gate = tf.zeros([coordinates, 1], self.dtype)
    meta_test = iteration is None
    running = None
    states = [theta]
    for _ in range(self.n_steps):
      current = states[-1]
      if meta_test:
        batch = [tuple(tf.stop_gradient(t) for t in pair)
                 for pair in self.network.batch_statistics(support_x, current)]
        if running is None:  # reset for every task: mean 0, variance 1
          running = [(tf.zeros_like(m), tf.ones_like(v)) for m, v in batch]
        running = [tuple((1 - BN_MOMENTUM) * r + BN_MOMENTUM * b for r, b in zip(old, new))
                   for old, new in zip(running, batch)]
      loss, grads = self._support_loss_and_gradient(current, support_x, support_y)
      g = flat(grads)[:, None]
      inputs = tf.concat([tf.broadcast_to(preprocess(loss), [coordinates, 2]),
                          preprocess(g[:, 0])], axis=1)
      h1, c1 = self.own.first_layer(inputs, h1, c1)
      f_gate, i_gate = self.own.gates(h1, c, f_gate, i_gate)
      c = f_gate * c - i_gate * g
      states.append(unflat(c))
    if meta_test and running is not None:
      states[-1] = {**states[-1], STATISTICS: running}
    return states

  def predict(self, state: dict, x: tf.Tensor) -> tf.Tensor:
    """Outputs of x under the state's weights; normalized with its running statistics when it
    has them (meta-test), else with x's own batch (training)."""
    theta = {k: v for k, v in state.items() if k != STATISTICS}
    return self.network(x, theta=theta, statistics=state.get(STATISTICS))
