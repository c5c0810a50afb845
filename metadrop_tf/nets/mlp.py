"""A small multilayer perceptron for regression tasks (sinusoid), with Meta Dropout's noise.

Finn et al.'s sinusoid network: two hidden layers of 40 units with ReLU, one linear output,
no batch norm. Meta Dropout's noise sits on the hidden units as on conv-4's feature maps
(noise_lib.multiplicative_noise): each hidden layer's pre-activation mu = h W + b is multiplied
by softplus(alpha + eps), alpha = h W_phi + b_phi from phi (the same shapes as theta), then
passes the ReLU. The output layer has no noise (regression has no logits to perturb).
"""

from typing import Sequence

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from metadrop_tf import config as config_lib
from metadrop_tf.nets import layers
from metadrop_tf.nets import network
from metadrop_tf.nets import noise as noise_lib

INIT_STDDEV = 0.01  # Finn et al.'s fully connected weights: truncated normal, 0.01


@network.register('mlp', ('channels',))  # its hidden units
class MLP(network.Network):
  """theta: dense<l>_kernel [in, units], dense<l>_bias, and the head dense_kernel
  [units, outputs], dense_bias; phi: the hidden layers' shapes again; beta: empty.

  Args:
    outputs: D_out, units of the linear output (1 for sinusoid).
    input_shape: (D_in,) of one input.
    hidden: units of each hidden layer.
    noisy, seed: as network.Network. dtype: variable dtype (float64 for gradient checks).
    noise_sampler: name in noise_lib.SAMPLERS.
  """
  inputs = 'numbers'

  @classmethod
  def from_config(cls, config: config_lib.Config, dtype: str | tf.DType = 'float32') -> 'MLP':
    return cls(config.way, config.image_shape, (config.n_channels,) * 2, noisy=config.noisy,
               dtype=dtype, seed=config.seed, noise_sampler=config.noise_sampler,
               noise_type=config.noise_type, noise_scale=config.noise_scale,
               noise_options=noise_lib.options(config))

  @classmethod
  def check_config(cls, config: config_lib.Config) -> None:
    """Information dropout and VIB are built on conv-4's blocks and features."""
    if config.noisy and config.noise_type in ('info_dropout', 'vib'):
      raise config_lib.ConfigError(f'`noise_type={config.noise_type}` is built for '
                                   '`backbone=conv4`')

  @classmethod
  def meta_test_bytes_per_episode(cls, config: config_lib.Config) -> int:
    """A few hundred floats per point: never the limit."""
    return (network.ACTIVATIONS_PER_NOISY_IMAGE * config.test_mc_samples * config.shot
            * config.n_channels * 4)

  def __init__(self, outputs: int = 1, input_shape: Sequence[int] = (1,),
               hidden: Sequence[int] = (40, 40), noisy: bool = True, dtype='float32', seed=0,
               noise_sampler: str = 'box_muller', **kwargs):
    super().__init__(noisy=noisy, seed=seed, dtype=dtype, **kwargs)
    self.outputs, self.hidden = outputs, tuple(hidden)
    self.image_shape = tuple(input_shape)  # the interface's name for one input's shape
    self.feature_dim = self.hidden[-1]
    self.sampler = noise_lib.SAMPLERS[noise_sampler]
    units_in = int(input_shape[-1])
    for index, units in enumerate(self.hidden):
      for group in ('theta', 'phi'):
        self._weight(group, f'dense{index}_kernel', (units_in, units),
                     keras.initializers.TruncatedNormal(stddev=INIT_STDDEV,
                                                        seed=self._next_seed()))
        self._weight(group, f'dense{index}_bias', (units,), 'zeros')
      units_in = units
    self._weight('theta', 'dense_kernel', (units_in, outputs),
                 keras.initializers.TruncatedNormal(stddev=INIT_STDDEV, seed=self._next_seed()))
    self._weight('theta', 'dense_bias', (outputs,), 'zeros')
    self.built = True

  def hidden_outputs(self, x: tf.Tensor, theta: dict | None = None, sample: bool = False,
                     seed: tf.Tensor | None = None, copies: int = 1, phi: dict | None = None,
                     shifts: dict | None = None, mix: layers.Mixing | None = None) -> list:
    """Each hidden layer's output after the ReLU, [copies * n, units], for inputs x [n, D_in].

    sample: draw the noise (needs `seed`, int32 [2]); ignored without noise. copies: M
    Monte-Carlo samples of every input, stacked copy by copy (each its own noise draw).
    theta, phi: weights as dicts of tensors (default: the variables). shifts: dict
    'dense<l>' -> [n, units] added to layer l's pre-activation before the ReLU (one copy).
    mix: a layers.Mixing: hidden layer l's input is mixed when mix.layer == l (one copy).
    """
    shifts = shifts or {}
    if mix is not None and copies != 1:
      raise ValueError('mixup is of one copy (copies=1)')
    theta = self.theta if theta is None else theta
    phi = self.phi if phi is None else phi
    sample = sample and self.noisy
    seeds = (tfp.random.split_seed(seed, n=len(self.hidden)) if sample
             else [None] * len(self.hidden))
    h, outputs = self.prepare_input(x), []
    for index in range(len(self.hidden)):
      name = f'dense{index}'
      h = layers.mixed_at(h, mix, index)
      mu = tf.matmul(h, theta[f'{name}_kernel']) + theta[f'{name}_bias']
      if self.noisy:
        alpha = tf.matmul(h, phi[f'{name}_kernel']) + phi[f'{name}_bias']
        if index == 0 and copies > 1:  # the inputs are shared: draw every copy's noise here
          shape = tf.concat([[copies], tf.shape(mu)], axis=0)
          mu = self.noise(mu, alpha, sample, seeds[index], self.sampler,
                          noise_shape=shape if sample else None)
          mu = tf.reshape(tf.broadcast_to(mu, shape), [-1, mu.shape[-1]])
        else:
          mu = self.noise(mu, alpha, sample, seeds[index], self.sampler)
      elif index == 0 and copies > 1:
        mu = tf.tile(mu, [copies, 1])
      if name in shifts:
        mu += shifts[name]
      h = tf.nn.relu(mu)
      outputs.append(h)
    return outputs

  @property
  def mixable_layers(self) -> int:
    """Manifold mixup's choices: the input and every hidden layer's input."""
    return len(self.hidden)

  def features(self, x: tf.Tensor, theta: dict | None = None, sample: bool = False,
               seed: tf.Tensor | None = None, copies: int = 1, phi: dict | None = None,
               statistics: list | None = None, beta: dict | None = None, shifts: dict | None = None,
               mix: layers.Mixing | None = None) -> tf.Tensor:
    """The last hidden layer [copies * n, units] (what the head reads)."""
    del statistics, beta  # no batch norm
    return self.hidden_outputs(x, theta, sample, seed, copies, phi, shifts, mix)[-1]

  def shift_units(self) -> dict:
    """Layers whose pre-activations `shifts` may move, name -> units (hidden and output)."""
    units = {f'dense{index}': units for index, units in enumerate(self.hidden)}
    units['dense'] = self.outputs
    return units

  def call(self, x: tf.Tensor, theta: dict | None = None, sample: bool = False,
           seed: tf.Tensor | None = None, copies: int = 1, phi: dict | None = None,
           statistics: list | None = None, beta: dict | None = None, shifts: dict | None = None,
           mix: layers.Mixing | None = None) -> tf.Tensor:
    """Predictions [copies * n, outputs] of inputs x [n, D_in]; arguments as hidden_outputs
    (shifts['dense'], [n, outputs], is added to the output)."""
    theta = self.theta if theta is None else theta
    features = self.features(x, theta, sample, seed, copies, phi, shifts=shifts, mix=mix)
    out = tf.matmul(features, theta['dense_kernel']) + theta['dense_bias']
    if shifts and 'dense' in shifts:
      out += shifts['dense']
    return out

  def batch_statistics(self, x: tf.Tensor, theta: dict | None = None,
                       beta: dict | None = None) -> list:
    """No batch norm: no statistics."""
    del x, theta, beta
    return []

  def noise_scales(self, x: tf.Tensor, theta: dict | None = None) -> dict:
    """softplus(alpha) of each hidden layer ('dense<l>', [n, units]); empty without noise."""
    if not self.learned_noise:
      return {}
    theta, phi = self.theta if theta is None else theta, self.phi
    inputs = [self.prepare_input(x)] + self.hidden_outputs(x, theta)[:-1]
    return {f'dense{index}': tf.nn.softplus(tf.matmul(h, phi[f'dense{index}_kernel'])
                                            + phi[f'dense{index}_bias'])
            for index, h in enumerate(inputs)}
