"""The conv-4 network of Meta Dropout: variables theta (adapted), phi (noise), beta (BN offsets).

The first implementation of the network interface (metadrop_tf/nets/network.py): topology only
(ResNet-12 is resnet.py); nets/backbones.py makes the network a Config names. Without noise
(noisy=False) phi is kept, unused.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from metadrop_tf import config as config_lib
from metadrop_tf.nets import layers
from metadrop_tf.nets import network
from metadrop_tf.nets import noise as noise_lib

config_lib.document(
    backbone='Network: conv4 (the reference), resnet12 (four residual stages, global average '
             'pooling; noise on every 3x3 conv) or mlp (sinusoid).',
    channels='conv4 width (mlp: hidden units); 0: the reference (64 Omniglot, 32 mImg, 40 mlp).')

N_BLOCKS = 4
KERNEL_SIZE = 3
INIT_STDDEV = 0.02


def feature_dim(image_shape: tuple, channels: int) -> int:
  """Length of the flattened feature after 4 stride-2 VALID pools (28 -> 1, 84 -> 5)."""
  size = image_shape[0] // 2 ** N_BLOCKS  # repeated halving, floored, is one floored division
  return size * size * channels


@network.register('conv4', ('channels',))  # its width
class MetaDropoutNet(network.Network):
  """Classifier theta + noise generator phi + batch-norm offsets beta, as in SPEC "Networks".

  Args:
    way: N, the number of classes (columns of theta's dense head).
    image_shape: (H, W, C) of one image.
    channels: conv width (64 Omniglot, 32 miniImageNet).
    noisy: noise in sampling forwards; False (MAML): phi is created but never used or trained.
    dtype: variable dtype (float64 for gradient checks).
    compute_dtype: dtype of the convolutions (e.g. 'bfloat16'), None for `dtype`.
    seed: initializer seed.
    noise_sampler: name in noise_lib.SAMPLERS of the N(0, 1) draws of the noise.
    noise_type, noise_scale: which noise the blocks draw (noise_lib.make_noise; Meta Dropout's by
      default, the regularizer baselines otherwise).
  """

  @classmethod
  def from_config(cls, config: config_lib.Config,
                  dtype: str | tf.DType = 'float32') -> 'MetaDropoutNet':
    return cls(cls.head_way(config), config.image_shape, config.n_channels, noisy=config.noisy,
               dtype=dtype, compute_dtype=cls.precision_dtype(config), seed=config.seed,
               noise_sampler=config.noise_sampler, noise_type=config.noise_type,
               noise_scale=config.noise_scale, noise_options=noise_lib.options(config))

  def __init__(self, way, image_shape, channels, noisy=True, dtype='float32',
               compute_dtype=None, seed=0, noise_sampler='box_muller', noise_type='metadrop',
               noise_scale=0.0, **kwargs):
    super().__init__(noisy=noisy, seed=seed, dtype=dtype, noise_type=noise_type,
                     noise_scale=noise_scale, **kwargs)
    self.way = way
    self.image_shape = tuple(image_shape)
    self.channels = channels
    self.compute_dtype_override = compute_dtype
    self.sampler = noise_lib.SAMPLERS[noise_sampler]
    self.feature_dim = feature_dim(image_shape, channels)
    in_channels = image_shape[-1]
    for block in range(N_BLOCKS):
      for group in ('theta', 'phi'):
        self._weight(group, f'conv{block}_kernel',
                     (KERNEL_SIZE, KERNEL_SIZE, in_channels, channels),
                     keras.initializers.TruncatedNormal(stddev=INIT_STDDEV, seed=self._next_seed()))
        self._weight(group, f'conv{block}_bias', (channels,), 'zeros')
      self._weight('beta', f'bn{block}', (channels,), 'zeros')
      in_channels = channels
    for group, columns in (('theta', way), ('phi', 1)):
      self._weight(group, 'dense_kernel', (self.feature_dim, columns),
                   keras.initializers.RandomNormal(stddev=INIT_STDDEV, seed=self._next_seed()))
      self._weight(group, 'dense_bias', (columns,), 'zeros')
    if noise_type == 'vib':  # the bottleneck's std from the features (after the others: the
      # other variables keep their initial values)
      self._weight('phi', 'vib_kernel', (self.feature_dim, self.feature_dim),
                   keras.initializers.TruncatedNormal(stddev=INIT_STDDEV, seed=self._next_seed()))
      self._weight('phi', 'vib_bias', (self.feature_dim,), 'zeros')
    self.built = True

  def used_phi(self) -> list:
    """phi variables the noise type uses: the bottleneck's (VIB), else the blocks', and the
    logits' when it draws logit noise (Meta Dropout, learned additive; noise_lib.NoiseType)."""
    names = self._names['phi']
    if self.noise_type == 'vib':
      return [n for n in names if n.startswith('vib_')]
    logits = noise_lib.REGISTRY[self.noise_type].logits
    return [n for n in names if n.startswith('conv') or (logits and n.startswith('dense'))]

  @property
  def block_noise(self) -> bool:
    """Whether the conv blocks draw noise (every noise type but the feature-level VIB)."""
    return self.noisy and self.noise is not None

  def bottleneck(self, features: tf.Tensor, sample: bool = False, seed: tf.Tensor | None = None,
                 phi: dict | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """VIB (--noise_type=vib): features [n, F] are the mean, sigma = softplus(features W +
    b) from phi, and a sample is mean + sigma * eps; returns (z, sigma)."""
    phi = self.phi if phi is None else phi
    sigma = tf.nn.softplus(tf.matmul(features, phi['vib_kernel']) + phi['vib_bias'])
    if not sample:
      return features, sigma
    return features + sigma * self.sampler(tf.shape(features), seed, features.dtype), sigma

  mixable_layers = N_BLOCKS  # manifold mixup: the input, then the outputs of blocks 0..2

  def block_outputs(self, x: tf.Tensor, theta: dict | None = None, sample: bool = False,
                    seed: tf.Tensor | None = None, copies: int = 1, phi: dict | None = None,
                    statistics: list | None = None, return_statistics: bool = False,
                    beta: dict | None = None, shifts: dict | None = None,
                    mix: layers.Mixing | None = None) -> list | tuple:
    """Outputs of the 4 conv blocks, [copies * n, H/2^l, W/2^l, C] each, for images x [n,H,W,C].

    sample: draw the multiplicative noise (needs `seed`, int32 [2]); ignored for MAML.
    copies: M Monte-Carlo samples of every image, stacked copy by copy on the batch axis;
      batch norm keeps per-copy statistics (SPEC "Inner loop").
    theta, phi: weights as dicts of tensors (default: the variables).
    statistics: per block (mean, variance) [C] for inductive batch norm (one copy); None: the
      batch's statistics (transductive). return_statistics: also return the batch's statistics
      of every block (a list; one copy). beta: batch-norm offsets as a dict of tensors (default:
      the variables; e.g. one inner step's, --bn_mode=per_step). shifts: dict 'conv<b>' ->
      [n, C] added to block b's normalized map before its ReLU (shift_units; one copy).
      mix: a layers.Mixing: block b's input is mixed when mix.layer == b (one copy).
    """
    theta = self.theta if theta is None else theta
    phi = self.phi if phi is None else phi
    beta = self.beta if beta is None else beta
    sample = sample and self.noisy
    seeds = tfp.random.split_seed(seed, n=N_BLOCKS) if sample else [None] * N_BLOCKS
    h, outputs, collected = self.prepare_input(x), [], []
    per_image = statistics is not None or return_statistics or shifts is not None
    if (per_image or mix is not None) and copies != 1:
      raise ValueError('inductive batch norm statistics, shifts and mixup are of one copy '
                       '(copies=1)')
    shifts = shifts or {}
    for b in range(N_BLOCKS):
      h = layers.mixed_at(h, mix, b)
      args = (h, theta[f'conv{b}_kernel'], theta[f'conv{b}_bias'], beta[f'bn{b}'],
              phi[f'conv{b}_kernel'] if self.block_noise else None,
              phi[f'conv{b}_bias'] if self.block_noise else None)
      kwargs = dict(sample=sample, seed=seeds[b], compute_dtype=self.compute_dtype_override,
                    sampler=self.sampler, noise=self.noise)
      shift = shifts.get(f'conv{b}')
      if return_statistics:
        h, block_statistics = layers.conv_block(*args, return_statistics=True, shift=shift,
                                                **kwargs)
        collected.append(block_statistics)
      elif per_image:
        h = layers.conv_block(*args, statistics=None if statistics is None else statistics[b],
                              shift=shift, **kwargs)
      elif b == 0:
        h = layers.conv_block_copies(*args, copies=copies, **kwargs)
      else:
        h = layers.conv_block(*args, groups=copies, **kwargs)
      outputs.append(h)
    return (outputs, collected) if return_statistics else outputs

  def batch_statistics(self, x: tf.Tensor, theta: dict | None = None,
                       beta: dict | None = None) -> list:
    """Per block, (mean, variance) [C] of the batch x [n, H, W, C] before its batch norm, in
    the deterministic forward with weights theta: what inductive batch norm normalizes other
    images with (e.g. the support's, for the query)."""
    return self.block_outputs(x, theta, return_statistics=True, beta=beta)[1]

  def features(self, x: tf.Tensor, theta: dict | None = None, sample: bool = False,
               seed: tf.Tensor | None = None, copies: int = 1, phi: dict | None = None,
               statistics: list | None = None, beta: dict | None = None, shifts: dict | None = None,
               mix: layers.Mixing | None = None) -> tf.Tensor:
    """Flattened features [copies * n, F] of images x [n, H, W, C]; arguments as block_outputs."""
    outputs = self.block_outputs(x, theta, sample, seed, copies, phi, statistics, beta=beta,
                                 shifts=shifts, mix=mix)
    return tf.reshape(outputs[-1], [-1, self.feature_dim])

  def shift_units(self) -> dict:
    """Layers whose pre-activations `shifts` may move, name -> units: the conv blocks'
    channels and the head's logits."""
    units = {f'conv{b}': self.channels for b in range(N_BLOCKS)}
    units['dense'] = int(self.theta['dense_kernel'].shape[-1])
    return units

  def head(self, features: tf.Tensor, theta: dict | None = None, sample: bool = False,
           seed: tf.Tensor | None = None, phi: dict | None = None) -> tf.Tensor:
    """Logits [n, N] from features [n, F]; the logit noise of the spec when sampling."""
    theta = self.theta if theta is None else theta
    phi = self.phi if phi is None else phi
    # Meta Dropout's logit noise, for the noise types that draw it (noise_lib.NoiseType.logits);
    # the others perturb the blocks only.
    noisy = self.noisy and noise_lib.REGISTRY[self.noise_type].logits
    return layers.noisy_head(
        features, theta['dense_kernel'], theta['dense_bias'],
        phi_kernel=phi['dense_kernel'] if noisy else None,
        phi_bias=phi['dense_bias'] if noisy else None,
        sample=sample and noisy, seed=seed, sampler=self.sampler)

  def call(self, x: tf.Tensor, theta: dict | None = None, sample: bool = False,
           seed: tf.Tensor | None = None, copies: int = 1, phi: dict | None = None,
           statistics: list | None = None, beta: dict | None = None, shifts: dict | None = None,
           mix: layers.Mixing | None = None) -> tf.Tensor:
    """Logits [copies * n, N] of images x [n, H, W, C]; arguments as block_outputs
    (shifts['dense'], [n, N], is added to the logits)."""
    sample = sample and self.noisy
    if sample:
      feature_seed, head_seed = tfp.random.split_seed(seed, n=2)
    else:
      feature_seed = head_seed = None
    feats = self.features(x, theta, sample, feature_seed, copies, phi, statistics, beta, shifts,
                          mix)
    if self.noise_type == 'vib' and self.noisy:
      feats, _ = self.bottleneck(feats, sample, head_seed, phi)
    logits = self.head(feats, theta, sample, head_seed, phi)
    if shifts and 'dense' in shifts:
      logits += shifts['dense']
    return logits

  def noise_scales(self, x: tf.Tensor, theta: dict | None = None) -> dict:
    """Deterministic noise factors of images x [n, H, W, C], name -> tensor: softplus(alpha)
    of each conv block ('block<b>', [n, H_l, W_l, C]) and the logit-noise scale sigma
    ('logit_sigma', [n, 1]). Empty without noise or with fixed noise."""
    if not self.learned_noise:
      return {}
    phi = self.phi
    outputs = self.block_outputs(x, theta)
    if self.noise_type == 'vib':
      feats = tf.reshape(outputs[-1], [-1, self.feature_dim])
      return {'vib_sigma': self.bottleneck(feats)[1]}
    scale = (noise_lib.information_dropout_scale if self.noise_type == 'info_dropout'
             else tf.nn.softplus)
    scales = [scale(alpha) for alpha in self._block_alphas(x, theta, outputs)]
    feats = tf.reshape(outputs[-1], [-1, self.feature_dim])
    scales.append(tf.nn.softplus(tf.matmul(feats, phi['dense_kernel']) + phi['dense_bias']))
    names = [f'block{b}' for b in range(N_BLOCKS)] + ['logit_sigma']
    return dict(zip(names, scales))

  def _block_alphas(self, x, theta=None, outputs=None, phi=None, beta=None):
    """phi's conv of every block's input in the deterministic forward: [n, H_l, W_l, C].
    phi / beta: the noise weights / batch-norm offsets as tensors (default: the variables)."""
    phi = self.phi if phi is None else phi
    outputs = self.block_outputs(x, theta, beta=beta) if outputs is None else outputs
    inputs = [self.prepare_input(x)] + outputs[:-1]
    return [layers.conv2d(h, phi[f'conv{b}_kernel'], phi[f'conv{b}_bias'])
            for b, h in enumerate(inputs)]

  def noise_penalty(self, x: tf.Tensor, theta: dict | None = None, phi: dict | None = None,
                    beta: dict | None = None) -> tf.Tensor:
    """Information dropout's KL (noise_lib.information_dropout_kl), averaged over every
    element of every block, of images x under weights theta; evaluated at the deterministic
    forward's block inputs (our simplification: the sampled forward's would differ by the
    noise of earlier blocks). VIB: KL(N(mean, sigma^2) || N(0, 1)) averaged over the
    features' elements. 0 for the other noise types. phi / beta: the noise weights and
    batch-norm offsets as tensors (default: the variables), as the forward takes them."""
    if self.noise_type == 'vib' and self.noisy:
      mean, sigma = self.bottleneck(self.features(x, theta, beta=beta), phi=phi)
      return tf.reduce_mean(0.5 * (tf.square(mean) + tf.square(sigma) - 1)
                            - tf.math.log(sigma))
    if self.noise_type != 'info_dropout' or not self.noisy:
      return tf.constant(0.0, self.dtype)
    return tf.add_n([tf.reduce_mean(noise_lib.information_dropout_kl(a))
                     for a in self._block_alphas(x, theta, phi=phi, beta=beta)]) / N_BLOCKS
