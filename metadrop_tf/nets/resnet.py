"""ResNet-12 as used in few-shot learning, on the network interface (metadrop_tf/nets/network.py).

Four residual stages of width w_s (default 64-160-320-640; 64-128-256-512 the lighter option);
each stage:

  x -> conv3x3 a -> BN -> leaky ReLU(0.1) -> conv3x3 b -> BN -> leaky ReLU -> conv3x3 c -> BN
  x -> conv1x1 shortcut -> BN
  sum -> leaky ReLU -> 2x2 max-pool

then global average pooling to features [n, w_3] and a dense head [w_3, N].

Parameters, in the groups of the interface:
  theta  stage<s>_conv{a,b,c}_kernel [3, 3, C_in, w_s] and stage<s>_shortcut_kernel
         [1, 1, C_in, w_s] (no biases: batch norm follows every conv), dense_kernel / _bias
  beta   stage<s>_bn{a,b,c,shortcut} [w_s]: batch-norm offsets, meta-learned and not adapted
         (the conv-4 reference's treatment of batch norm: transductive statistics, offset only)
  phi    Meta Dropout's noise generator: for each 3x3 conv a conv of the same shape plus a
         bias, alpha = conv(x) + b, whose output multiplies that conv's output by
         softplus(alpha + eps) before its batch norm (as conv-4 does per block: noise on every
         3x3 conv, the finest placement; the shortcut's 1x1 conv is left noiseless, it only
         matches widths), and the conv-4 head's logit noise (dense_kernel [w_3, 1], _bias [1]).
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from metadrop_tf import config as config_lib
from metadrop_tf.nets import layers
from metadrop_tf.nets import network
from metadrop_tf.nets import noise as noise_lib

config_lib.document(
    resnet_widths='The four stage widths of --backbone=resnet12 (64,128,256,512 is the lighter '
                  'option).')

WIDTHS = (64, 160, 320, 640)
LIGHT_WIDTHS = (64, 128, 256, 512)
LEAK = 0.1
CONVS = ('a', 'b', 'c')


@network.register('resnet12', ('resnet_widths',))
class ResNet12(network.Network):
  """ResNet-12 with Meta Dropout's noise on every 3x3 conv (module docstring).

  Args:
    way: N, classes of the head (0: a head made per task, --zero_head).
    image_shape: (H, W, C); H and W are pooled by 16 (then averaged away).
    widths: the four stage widths.
    noisy: as network.Network (False: phi is created but never used or trained).
    dtype, compute_dtype, seed, noise_sampler: as model.MetaDropoutNet.
  """

  @classmethod
  def from_config(cls, config: config_lib.Config, dtype: str | tf.DType = 'float32') -> 'ResNet12':
    return cls(cls.head_way(config), config.image_shape, config.widths, noisy=config.noisy,
               dtype=dtype, compute_dtype=cls.precision_dtype(config), seed=config.seed,
               noise_sampler=config.noise_sampler)

  @classmethod
  def check_config(cls, config: config_lib.Config) -> None:
    """Meta Dropout's noise only, and no mixup."""
    if config.noisy and config.noise_type != 'metadrop':
      raise config_lib.ConfigError(f'`noise_type={config.noise_type}` is built for conv4 and '
                                   "mlp; ResNet-12 has Meta Dropout's noise only")
    if config.inner_mixup:
      raise config_lib.ConfigError('`inner_mixup` is built for conv4 and mlp, not '
                                   '`backbone=resnet12`')

  @staticmethod
  def first_block_channels(config: config_lib.Config) -> int:
    """Three 3x3 convs and a shortcut at full resolution where conv-4 has one conv: counted
    three times the first stage's width (an estimate, not measured)."""
    return 3 * config.widths[0]

  def __init__(self, way, image_shape, widths=WIDTHS, noisy=True, dtype='float32',
               compute_dtype=None, seed=0, noise_sampler='box_muller', **kwargs):
    super().__init__(noisy=noisy, seed=seed, dtype=dtype, **kwargs)
    if len(widths) != 4 or min(widths) < 1:
      raise ValueError(f'ResNet-12 needs 4 positive stage widths, got {list(widths)}')
    self.way, self.image_shape, self.widths = way, tuple(image_shape), tuple(widths)
    self.compute_dtype_override = compute_dtype
    self.sampler = noise_lib.SAMPLERS[noise_sampler]
    self.feature_dim = self.widths[-1]
    c_in = image_shape[-1]
    for s, w in enumerate(self.widths):
      for i, conv in enumerate(CONVS):
        shape = (3, 3, c_in if i == 0 else w, w)
        for group in ('theta', 'phi'):
          self._weight(group, f'stage{s}_conv{conv}_kernel', shape, self._he(shape))
        self._weight('phi', f'stage{s}_conv{conv}_bias', (w,), 'zeros')
        self._weight('beta', f'stage{s}_bn{conv}', (w,), 'zeros')
      shape = (1, 1, c_in, w)
      self._weight('theta', f'stage{s}_shortcut_kernel', shape, self._he(shape))
      self._weight('beta', f'stage{s}_bnshortcut', (w,), 'zeros')
      c_in = w
    for group, columns in (('theta', way), ('phi', 1)):
      self._weight(group, 'dense_kernel', (c_in, columns),
                   keras.initializers.RandomNormal(stddev=0.02, seed=self._next_seed()))
      self._weight(group, 'dense_bias', (columns,), 'zeros')
    self.built = True

  def _he(self, shape):
    """He-normal for a conv kernel of `shape` (fan-in), truncated, seeded."""
    fan_in = shape[0] * shape[1] * shape[2]
    return keras.initializers.TruncatedNormal(stddev=(2.0 / fan_in) ** 0.5,
                                              seed=self._next_seed())

  def _conv(self, h, kernel):
    return layers.conv2d(h, kernel, tf.zeros([kernel.shape[-1]], h.dtype),
                         self.compute_dtype_override)

  def stage_outputs(self, x: tf.Tensor, theta: dict | None = None, sample: bool = False,
                    seed: tf.Tensor | None = None, copies: int = 1, phi: dict | None = None,
                    with_noise_scales: bool = False, statistics: list | None = None,
                    return_statistics: bool = False, beta: dict | None = None) -> list | tuple:
    """Outputs of the 4 stages, [copies * n, H/2^(s+1), W/2^(s+1), w_s] each, for images x
    [n, H, W, C]; with_noise_scales: also {conv name: softplus(alpha)} (deterministic).

    sample: draw the noise (needs `seed`, int32 [2]); ignored without noise. copies: M
    Monte-Carlo samples of every image, stacked copy by copy, each copy batch-normalized with
    its own statistics (as conv-4). statistics: (mean, variance) of each of the 16 batch norms
    in order, for inductive batch norm (one copy); return_statistics: also return the batch's.
    beta: batch-norm offsets as a dict of tensors (default: the variables).
    """
    theta = self.theta if theta is None else theta
    phi = self.phi if phi is None else phi
    beta = self.beta if beta is None else beta
    sample = sample and self.noisy
    seeds = tfp.random.split_seed(seed, n=4 * len(CONVS)) if sample else [None] * 12
    if (statistics is not None or return_statistics) and copies != 1:
      raise ValueError('inductive batch norm statistics are of one copy (copies=1)')
    given, collected = iter(statistics or ()), []

    def norm(h, offset):
      if return_statistics:
        collected.append(layers.moments(h))
        return layers.normalize(h, offset, collected[-1])
      return layers.norm(h, offset, copies, next(given) if statistics is not None else None)

    h = self.prepare_input(x)
    if copies > 1:
      h = tf.tile(h, [copies, 1, 1, 1])
    outputs, scales = [], {}
    for s in range(4):
      stage_in, out = h, h
      for i, conv in enumerate(CONVS):
        name = f'stage{s}_conv{conv}'
        out_mu = self._conv(out, theta[f'{name}_kernel'])
        if self.noisy and (sample or with_noise_scales):
          alpha = self._conv(out, phi[f'{name}_kernel']) + phi[f'{name}_bias']
          if with_noise_scales:
            scales[name] = tf.nn.softplus(alpha)
          out_mu = noise_lib.multiplicative_noise(out_mu, alpha, sample, seeds[3 * s + i],
                                               self.sampler)
        elif self.noisy:  # the deterministic forward keeps the noise's mean factor softplus(alpha)
          alpha = self._conv(out, phi[f'{name}_kernel']) + phi[f'{name}_bias']
          out_mu = noise_lib.multiplicative_noise(out_mu, alpha, False)
        out = norm(out_mu, beta[f'stage{s}_bn{conv}'])
        if conv != CONVS[-1]:
          out = tf.nn.leaky_relu(out, LEAK)
      shortcut = norm(self._conv(stage_in, theta[f'stage{s}_shortcut_kernel']),
                      beta[f'stage{s}_bnshortcut'])
      h = tf.nn.max_pool2d(tf.nn.leaky_relu(out + shortcut, LEAK), ksize=2, strides=2,
                           padding='VALID')
      outputs.append(h)
    if return_statistics:
      return outputs, collected
    return (outputs, scales) if with_noise_scales else outputs

  def batch_statistics(self, x: tf.Tensor, theta: dict | None = None,
                       beta: dict | None = None) -> list:
    """(mean, variance) of the batch x before each of the 16 batch norms, in the deterministic
    forward with weights theta (what inductive batch norm normalizes other images with)."""
    return self.stage_outputs(x, theta, return_statistics=True, beta=beta)[1]

  def block_outputs(self, x: tf.Tensor, theta: dict | None = None, sample: bool = False,
                    seed: tf.Tensor | None = None, copies: int = 1,
                    phi: dict | None = None) -> list:
    """The stage outputs (what visualization plots per block, as conv-4's blocks)."""
    return self.stage_outputs(x, theta, sample, seed, copies, phi)

  def features(self, x: tf.Tensor, theta: dict | None = None, sample: bool = False,
               seed: tf.Tensor | None = None, copies: int = 1, phi: dict | None = None,
               statistics: list | None = None, beta: dict | None = None) -> tf.Tensor:
    """Globally average-pooled features [copies * n, w_3]; arguments as stage_outputs."""
    outputs = self.stage_outputs(x, theta, sample, seed, copies, phi, statistics=statistics,
                                 beta=beta)
    return tf.reduce_mean(outputs[-1], axis=[1, 2])

  def call(self, x: tf.Tensor, theta: dict | None = None, sample: bool = False,
           seed: tf.Tensor | None = None, copies: int = 1, phi: dict | None = None,
           statistics: list | None = None, beta: dict | None = None) -> tf.Tensor:
    """Logits [copies * n, N] of images x [n, H, W, C]; arguments as stage_outputs."""
    theta = self.theta if theta is None else theta
    phi = self.phi if phi is None else phi
    sample = sample and self.noisy
    feature_seed, head_seed = tfp.random.split_seed(seed, n=2) if sample else (None, None)
    feats = self.features(x, theta, sample, feature_seed, copies, phi, statistics, beta)
    return layers.noisy_head(
        feats, theta['dense_kernel'], theta['dense_bias'],
        phi_kernel=phi['dense_kernel'] if self.noisy else None,
        phi_bias=phi['dense_bias'] if self.noisy else None,
        sample=sample, seed=head_seed, sampler=self.sampler)

  def noise_scales(self, x: tf.Tensor, theta: dict | None = None) -> dict:
    """softplus(alpha) of every 3x3 conv ('stage<s>_conv<c>', [n, H_s, W_s, w_s]) and the
    logit-noise scale ('logit_sigma', [n, 1]) of images x; empty without noise."""
    if not self.noisy:
      return {}
    outputs, scales = self.stage_outputs(x, theta, with_noise_scales=True)
    feats = tf.reduce_mean(outputs[-1], axis=[1, 2])
    phi = self.phi
    scales['logit_sigma'] = tf.nn.softplus(tf.matmul(feats, phi['dense_kernel'])
                                           + phi['dense_bias'])
    return scales
