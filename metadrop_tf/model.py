"""The conv-4 network of Meta Dropout: variables theta (adapted), phi (noise), beta (BN offsets).

The network interface the learners use (metadrop_tf/learners):
  theta, phi, beta         parameter groups, name -> variable: theta is what an inner loop may
                           adapt, phi Meta Dropout's noise generator, beta meta-learned only
  head_names               the theta names of the classifier head (ANIL adapts these)
  select(spec)             theta names a --adapt_params value selects
  initial_theta(), read_phi()   the groups as dicts of tensors
  call(x, theta=, sample=, seed=, copies=, phi=)   logits from explicit fast weights
  features(x, theta=...)   the representation the head reads
  meta_variables()         what the outer loop trains
The forward takes fast weights explicitly (`theta=` a dict of tensors), so the inner loop never
assigns to variables. Without noise (maml=True) phi is kept, unused.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from metadrop_tf import layers

N_BLOCKS = 4
KERNEL_SIZE = 3
INIT_STDDEV = 0.02


def feature_dim(image_shape, channels):
  """Length of the flattened feature after 4 stride-2 VALID pools (28 -> 1, 84 -> 5)."""
  size = image_shape[0]
  for _ in range(N_BLOCKS):
    size //= 2
  return size * size * channels


class MetaDropoutNet(keras.Model):
  """Classifier theta + noise generator phi + batch-norm offsets beta, as in SPEC "Networks".

  Args:
    way: N, the number of classes (columns of theta's dense head).
    image_shape: (H, W, C) of one image.
    channels: conv width (64 Omniglot, 32 miniImageNet).
    maml: no noise anywhere; phi is created but never used or trained.
    dtype: variable dtype (float64 for gradient checks).
    compute_dtype: dtype of the convolutions (e.g. 'bfloat16'), None for `dtype`.
    seed: initializer seed.
    noise_sampler: name in layers.SAMPLERS of the N(0, 1) draws of the noise.
  """

  def __init__(self, way, image_shape, channels, maml=False, dtype='float32',
               compute_dtype=None, seed=0, noise_sampler='box_muller', **kwargs):
    super().__init__(dtype=dtype, **kwargs)
    self.way = way
    self.image_shape = tuple(image_shape)
    self.channels = channels
    self.maml = maml
    self.compute_dtype_override = compute_dtype
    self.sampler = layers.SAMPLERS[noise_sampler]
    self.feature_dim = feature_dim(image_shape, channels)
    self._seed = seed
    self._names = {'theta': [], 'phi': [], 'beta': []}
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
    self.built = True

  def _next_seed(self):
    self._seed += 1
    return self._seed

  def _weight(self, group, name, shape, initializer):
    """Creates a variable as its own attribute, so tf.train.Checkpoint tracks it by name."""
    attr = f'{group}_{name}'
    setattr(self, attr, self.add_weight(shape=shape, initializer=initializer, name=attr,
                                        dtype=self.dtype))
    self._names[group].append(name)

  def _group(self, group):
    return {name: getattr(self, f'{group}_{name}') for name in self._names[group]}

  @property
  def theta(self):
    """Classifier weights, name -> variable: conv{0..3}_kernel/bias, dense_kernel [F, N],
    dense_bias."""
    return self._group('theta')

  @property
  def phi(self):
    """Noise-generator weights, same names as theta; dense_kernel is one column [F, 1]."""
    return self._group('phi')

  @property
  def beta(self):
    """Batch-norm offsets bn{0..3} [C]: meta-learned, never adapted in the inner loop."""
    return self._group('beta')

  head_names = ('dense_kernel', 'dense_bias')

  def select(self, spec: str):
    """theta names chosen by spec: '' (None: all), 'head', or comma-separated names or name
    prefixes (e.g. 'conv3,dense'). Raises ValueError for a part that matches nothing."""
    if not spec:
      return None
    chosen = []
    for part in (p.strip() for p in spec.split(',')):
      matches = list(self.head_names) if part == 'head' else [
          n for n in self._names['theta'] if n.startswith(part)]
      if not matches:
        raise ValueError(f'--adapt_params part {part!r} matches no parameter of '
                         f'{self._names["theta"]}')
      chosen += [m for m in matches if m not in chosen]
    return chosen

  def meta_variables(self):
    """The outer loop's trained variables: theta, phi and beta (metadrop); theta and beta (MAML)."""
    groups = ('theta', 'beta') if self.maml else ('theta', 'phi', 'beta')
    return [v for g in groups for v in self._group(g).values()]

  def initial_theta(self):
    """theta as a dict of tensors: the start of the inner loop."""
    return {k: tf.convert_to_tensor(v) for k, v in self.theta.items()}

  def read_phi(self):
    """phi as a dict of tensors. Forwards given the same tensors share the work that depends
    only on phi and the images (the first block's noise logits across inner steps)."""
    return {k: tf.convert_to_tensor(v) for k, v in self.phi.items()}

  def block_outputs(self, x, theta=None, sample=False, seed=None, copies=1, phi=None):
    """Outputs of the 4 conv blocks, [copies * n, H/2^l, W/2^l, C] each, for images x [n,H,W,C].

    sample: draw the multiplicative noise (needs `seed`, int32 [2]); ignored for MAML.
    copies: M Monte-Carlo samples of every image, stacked copy by copy on the batch axis;
      batch norm keeps per-copy statistics (SPEC "Inner loop").
    theta, phi: weights as dicts of tensors (default: the variables).
    """
    theta = self.theta if theta is None else theta
    phi = self.phi if phi is None else phi
    beta = self.beta
    sample = sample and not self.maml
    seeds = tfp.random.split_seed(seed, n=N_BLOCKS) if sample else [None] * N_BLOCKS
    h, outputs = tf.cast(x, self.dtype), []
    for b in range(N_BLOCKS):
      args = (h, theta[f'conv{b}_kernel'], theta[f'conv{b}_bias'], beta[f'bn{b}'],
              None if self.maml else phi[f'conv{b}_kernel'],
              None if self.maml else phi[f'conv{b}_bias'])
      kwargs = dict(sample=sample, seed=seeds[b], compute_dtype=self.compute_dtype_override,
                    sampler=self.sampler)
      if b == 0:
        h = layers.conv_block_copies(*args, copies=copies, **kwargs)
      else:
        h = layers.conv_block(*args, groups=copies, **kwargs)
      outputs.append(h)
    return outputs

  def features(self, x, theta=None, sample=False, seed=None, copies=1, phi=None):
    """Flattened features [copies * n, F] of images x [n, H, W, C]; arguments as block_outputs."""
    return tf.reshape(self.block_outputs(x, theta, sample, seed, copies, phi)[-1],
                      [-1, self.feature_dim])

  def head(self, features, theta=None, sample=False, seed=None, phi=None):
    """Logits [n, N] from features [n, F]; the logit noise of the spec when sampling."""
    theta = self.theta if theta is None else theta
    phi = self.phi if phi is None else phi
    noisy = not self.maml
    return layers.noisy_head(
        features, theta['dense_kernel'], theta['dense_bias'],
        phi_kernel=phi['dense_kernel'] if noisy else None,
        phi_bias=phi['dense_bias'] if noisy else None,
        sample=sample and noisy, seed=seed, sampler=self.sampler)

  def call(self, x, theta=None, sample=False, seed=None, copies=1, phi=None):
    """Logits [copies * n, N] of images x [n, H, W, C]; arguments as block_outputs."""
    sample = sample and not self.maml
    if sample:
      feature_seed, head_seed = tfp.random.split_seed(seed, n=2)
    else:
      feature_seed = head_seed = None
    feats = self.features(x, theta, sample, feature_seed, copies, phi)
    return self.head(feats, theta, sample, head_seed, phi)

  def noise_scales(self, x, theta=None):
    """Deterministic noise factors of images x [n, H, W, C], name -> tensor: softplus(alpha)
    of each conv block ('block<b>', [n, H_l, W_l, C]) and the logit-noise scale sigma
    ('logit_sigma', [n, 1]). Empty without noise."""
    if self.maml:
      return {}
    phi = self.phi
    outputs = self.block_outputs(x, theta)
    inputs = [tf.cast(x, self.dtype)] + outputs[:-1]
    scales = [tf.nn.softplus(layers.conv2d(h, phi[f'conv{b}_kernel'], phi[f'conv{b}_bias']))
              for b, h in enumerate(inputs)]
    feats = tf.reshape(outputs[-1], [-1, self.feature_dim])
    scales.append(tf.nn.softplus(tf.matmul(feats, phi['dense_kernel']) + phi['dense_bias']))
    names = [f'block{b}' for b in range(N_BLOCKS)] + ['logit_sigma']
    return dict(zip(names, scales))


# Live activations of one support image's first-block map (H x W x C) per MC copy during a
# meta-test inner step: measured ~13.5 (Omniglot) and ~15.5 (miniImageNet) from peak RSS.
ACTIVATIONS_PER_NOISY_IMAGE = 16


def meta_test_bytes_per_episode(config) -> int:
  """Estimated peak activation bytes of one meta-test episode of this network (float32): the
  first block's map of every support image and MC copy dominates."""
  height, width, _ = config.image_shape
  return (ACTIVATIONS_PER_NOISY_IMAGE * config.test_mc_samples * config.way * config.shot
          * height * width * config.n_channels * 4)


def build_model(config, dtype='float32'):
  """The network a Config describes (dataset shape, width, way, noise on or off, precision,
  seed, sampler)."""
  way = 0 if config.zero_head else config.way  # a zero head is made per task
  return MetaDropoutNet(way, config.image_shape, config.n_channels,
                        maml=not config.noisy,
                        dtype=dtype,
                        compute_dtype='bfloat16' if config.precision == 'bfloat16' else None,
                        seed=config.seed, noise_sampler=config.noise_sampler)
