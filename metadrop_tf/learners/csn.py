"""Conditionally Shifted Neurons (Munkhdalai et al., ICML 2018), with direct-feedback
conditioning.

Adaptation is one conditioning pass, not gradient steps on the weights:
  1. information: for every support example i and every shiftable layer l (network
     .shift_units(): conv-4's blocks per channel and its logits; the MLP's hidden layers and
     output), I_il = dL_i / da_il, the gradient of example i's support loss with respect to the
     layer's pre-activations (per channel for a conv map: the gradient of a shift of the whole
     channel, i.e. summed over positions). One backward pass of the summed support loss.
  2. values: V_il = g_l(I_il), a small MLP applied to every neuron's scalar separately
     (coordinate-wise, one MLP per layer), so one value function serves any width or way.
  3. keys: k_i = f(x_i), a learned key network (the main network's topology without its head,
     then a linear map to KEY_DIM).
  4. a query x: a = softmax_i(cos(f(x), k_i)) over the support examples; its shifts are
     sum_i a_i V_il, added to layer l's pre-activations (after batch norm, before the ReLU)
     of the main network's forward on x.
The main network's initial weights, the key network and the value functions are meta-learned
through the query loss (second order through the information unless --first_order).

Our choices where the paper leaves room (docs/learners.md, "Conditionally Shifted Neurons"): shifts
on pre-activations (as the public TF1 implementation), per-channel shifts for conv maps, one value
MLP per layer, attention without a temperature, keys from a separate network with its own
(transductive) batch norm.
"""

from typing import Optional

import keras
import tensorflow as tf

from metadrop_tf import config as config_lib
from metadrop_tf import learners
from metadrop_tf import objectives
from metadrop_tf.learners import base
from metadrop_tf.nets import layers
from metadrop_tf.nets import network as network_lib

KEYS = 'csn_keys'  # an adapted state's support keys [n, KEY_DIM]
VALUES = 'csn_values'  # and its values, layer -> [n, units]
KEY_DIM = 32
VALUE_HIDDEN = 20  # units of the value MLPs' two hidden layers


def attention(query_keys: tf.Tensor, support_keys: tf.Tensor) -> tf.Tensor:
  """softmax over the support of the cosine similarities: [m, d] x [n, d] -> [m, n]."""
  q = tf.math.l2_normalize(query_keys, axis=-1, epsilon=1e-12)
  k = tf.math.l2_normalize(support_keys, axis=-1, epsilon=1e-12)
  return tf.nn.softmax(tf.matmul(q, k, transpose_b=True), axis=-1)


class CSNFunctions(keras.Model):
  """The learner's own variables: the key network and one value MLP per shiftable layer.

  Args:
    network: the main network (its shift_units(), and for images its conv widths).
    key_dim: length of the keys. value_hidden: units of the value MLPs' hidden layers.
  """

  def __init__(self, network, key_dim: int = KEY_DIM, value_hidden: int = VALUE_HIDDEN,
               seed: int = 0):
    super().__init__(dtype=network.dtype)
    self._seed = seed + 1000
    self.images = len(network.image_shape) == 3
    self.key_layers = []
    if self.images:  # conv-4's topology: 3x3 conv, batch norm, ReLU, 2x2 max-pool
      width, c_in = network.channels, network.image_shape[-1]
      for block in range(4):
        self._dense_like(f'key_conv{block}', (3, 3, c_in, width))
        c_in = width
      key_in = network.feature_dim
    else:
      units_in = network.image_shape[-1]
      for index, units in enumerate(network.hidden):
        self._dense_like(f'key_dense{index}', (units_in, units))
        units_in = units
      key_in = units_in
    self._dense_like('key_out', (key_in, key_dim), hidden=False)
    self.layer_names = list(network.shift_units())
    for name in self.layer_names:
      for index, (fan_in, fan_out) in enumerate(((1, value_hidden),
                                                 (value_hidden, value_hidden),
                                                 (value_hidden, 1))):
        # The output layer starts at zero: no shifts, CSN starts as the plain network.
        self._dense_like(f'value_{name}_{index}', (fan_in, fan_out), hidden=index < 2,
                         zero=index == 2)
    self.built = True

  def _dense_like(self, name, shape, hidden=True, zero=False):
    """A kernel (He-normal for ReLU layers, else Glorot-normal; zeros if `zero`) and a zero
    bias."""
    self._seed += 1
    init = (keras.initializers.HeNormal(seed=self._seed) if hidden
            else keras.initializers.GlorotNormal(seed=self._seed))
    init = 'zeros' if zero else init
    setattr(self, f'{name}_kernel', self.add_weight(shape=shape, initializer=init,
                                                    name=f'{name}_kernel', dtype=self.dtype))
    setattr(self, f'{name}_bias', self.add_weight(shape=shape[-1:], initializer='zeros',
                                                  name=f'{name}_bias', dtype=self.dtype))
    if name.startswith('key_') and name != 'key_out':
      self.key_layers.append(name)

  def _kernel_bias(self, name):
    return getattr(self, f'{name}_kernel'), getattr(self, f'{name}_bias')

  def keys(self, x: tf.Tensor) -> tf.Tensor:
    """Keys [n, key_dim] of inputs x [n, ...] (network.prepare_input already applied)."""
    h = x
    for name in self.key_layers:
      kernel, bias = self._kernel_bias(name)
      if self.images:
        h = layers.batch_norm(layers.conv2d(h, kernel, bias), tf.zeros_like(bias))
        h = tf.nn.max_pool2d(tf.nn.relu(h), ksize=2, strides=2, padding='VALID')
      else:
        h = tf.nn.relu(tf.matmul(h, kernel) + bias)
    h = tf.reshape(h, [tf.shape(h)[0], -1])
    kernel, bias = self._kernel_bias('key_out')
    return tf.matmul(h, kernel) + bias

  def values(self, name: str, information: tf.Tensor) -> tf.Tensor:
    """g_name applied to every element of information [n, units] -> [n, units]."""
    h = information[..., None]
    for index in range(3):
      kernel, bias = self._kernel_bias(f'value_{name}_{index}')
      h = tf.tensordot(h, kernel, axes=1) + bias
      if index < 2:
        h = tf.nn.relu(h)
    return h[..., 0]


@learners.register('csn')
class CSN(base.Learner):
  """Conditionally shifted neurons around a network with shift_units() (conv4, mlp).

  Args:
    network: the main network (not noisy).
    first_order: stop gradients through the direct-feedback information.
    objective: the task's loss and metric.
    key_dim, value_hidden, seed: of CSNFunctions.
  """

  def __init__(self, network, first_order: bool = False,
               objective: objectives.Objective = objectives.CLASSIFICATION,
               key_dim: int = KEY_DIM, value_hidden: int = VALUE_HIDDEN, seed: int = 0):
    super().__init__(network, 1, objective)
    if not network.shift_units():
      raise ValueError(f'`learner=csn` needs a network with shiftable layers; '
                       f'{type(network).__name__} has none (use `backbone=conv4` or mlp)')
    if network.noisy:
      raise ValueError('`learner=csn` does not sample noise; drop `meta_dropout`')
    self.first_order = first_order
    self.own = CSNFunctions(network, key_dim, value_hidden, seed)

  OPTIONS = ('first_order',)

  @classmethod
  def check_config(cls, config: config_lib.Config) -> None:
    """ConfigError for a backbone CSN cannot shift."""
    if config.backbone == 'resnet12':
      raise config_lib.ConfigError('`learner=csn` shifts conv-4 or MLP neurons; use '
                                   '`backbone=conv4` (images) or mlp (sinusoid)')

  @classmethod
  def from_config(cls, network: network_lib.Network, config: config_lib.Config) -> 'CSN':
    return cls(network, first_order=config.first_order,
               objective=objectives.for_config(config), seed=config.seed)

  def initial_state(self, way: Optional[int] = None) -> dict:
    del way
    return self.network.initial_theta()

  def information(self, theta: dict, support_x: tf.Tensor, support_y: tf.Tensor) -> dict:
    """Direct feedback, layer -> [n, units]: the gradient of every support example's loss
    with respect to the layer's (per-example) shift at zero."""
    n = tf.shape(support_x)[0]
    zeros = {name: tf.zeros(tf.stack([n, units]), self.dtype)
             for name, units in self.network.shift_units().items()}
    if 'dense' in zeros:  # the head's width is the task's way
      zeros['dense'] = tf.zeros(tf.shape(support_y), self.dtype)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(zeros)
      outputs = self.network(support_x, theta=theta, shifts=zeros)
      # objective.loss is the mean over examples (and outputs); times n: each example's own.
      loss = self.objective.loss(outputs, support_y) * tf.cast(n, self.dtype)
    grads = tape.gradient(loss, zeros)
    if self.first_order:
      grads = {name: tf.stop_gradient(g) for name, g in grads.items()}
    return grads

  def adapt(self, support_x: tf.Tensor, support_y: tf.Tensor, seed: tf.Tensor, mc_samples: int = 1,
            start: Optional[dict] = None, iteration: tf.Tensor | None = None) -> list:
    """[state_0, state_1]: the initial weights, then the same weights with the support's keys
    and values (seed, mc_samples and iteration are unused: no noise, no schedule)."""
    del seed, mc_samples, iteration
    theta = self.initial_state() if start is None else start
    information = self.information(theta, support_x, support_y)
    values = {name: self.own.values(name, info) for name, info in information.items()}
    keys = self.own.keys(self.network.prepare_input(support_x))
    return [theta, {**theta, KEYS: keys, VALUES: values}]

  def shifts(self, state: dict, x: tf.Tensor) -> Optional[dict]:
    """The shifts of inputs x under an adapted state (None before adaptation)."""
    if KEYS not in state:
      return None
    weights = attention(self.own.keys(self.network.prepare_input(x)), state[KEYS])
    return {name: tf.matmul(weights, values) for name, values in state[VALUES].items()}

  def predict(self, state: dict, x: tf.Tensor) -> tf.Tensor:
    theta = {k: v for k, v in state.items() if k not in (KEYS, VALUES)}
    return self.network(x, theta=theta, shifts=self.shifts(state, x))
