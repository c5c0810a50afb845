"""The noise of noisy networks, as distributions of the activations given their mean mu and the
noise generator's output alpha: Meta Dropout's multiplicative noise and the baselines
(additive, fixed, information dropout), their samplers and the registry of noise types.

Each noise type is a component (metadrop_tf.components) with the options it reads.
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp

from metadrop_tf import components
from metadrop_tf import config as config_lib

config_lib.document(
    noise_type="The noise of a noisy learner: metadrop (Meta Dropout's learned multiplicative "
               'noise), or the baselines learned_add (learned additive), info_dropout '
               '(information dropout), vib (variational information bottleneck on the features; '
               'both with --noise_penalty), fixed_mult, fixed_add (Gaussian of std '
               '--noise_scale, nothing learned).',
    noise_penalty='Weight of the KL term of info_dropout and vib in the inner (support) loss.',
    noise_scale='Standard deviation of the fixed-noise baselines (--noise_type=fixed_*).')

tfd = tfp.distributions


def box_muller_normal(shape, seed, dtype=tf.float32):
  """Exact N(0, 1) samples of `shape` from a stateless seed (int32 [2]), by Box-Muller.

  The same distribution as tf.random.stateless_normal (what tfp's Normal.sample draws with),
  but about 1.7x faster on CPU: TF's kernel transforms each uniform pair with scalar libm
  calls, these element-wise ops are vectorized. The noise draw was a third of a meta-test step.
  """
  total = tf.reduce_prod(shape)
  half = (total + 1) // 2
  u = tf.random.stateless_uniform(tf.stack([2, half]), seed, dtype=dtype)  # [0, 1)
  radius = tf.sqrt(-2 * tf.math.log(1 - u[0]))
  angle = (2 * math.pi) * u[1]
  pairs = tf.concat([radius * tf.cos(angle), radius * tf.sin(angle)], axis=0)
  return tf.reshape(pairs[:total], shape)


def tfp_normal(shape, seed, dtype=tf.float32):
  """N(0, 1) samples of `shape` drawn by tfp's Normal (TF's stateless normal kernel)."""
  return tfd.Normal(tf.zeros([], dtype), tf.ones([], dtype)).sample(shape, seed=seed)


SAMPLERS = {'box_muller': box_muller_normal, 'tfp': tfp_normal}


def multiplicative_noise(mu, alpha, sample, seed=None, sampler=box_muller_normal,
                         noise_shape=None):
  """Meta Dropout's noise: mu * softplus(z), z = alpha + eps with eps ~ N(0, 1)
  (reparameterized) when sampling, z = alpha otherwise.

  mu, alpha: shapes that broadcast to noise_shape (default alpha's shape), the shape of eps and
  of the result when sampling. seed: int32 [2] stateless seed, needed when sample is True.
  sampler: one of SAMPLERS, (shape, seed, dtype) -> N(0, 1) samples.
  """
  if sample:
    shape = tf.shape(alpha) if noise_shape is None else noise_shape
    z = alpha + sampler(shape, seed, alpha.dtype)
  else:
    z = alpha
  return mu * tf.nn.softplus(z)


def additive_noise(mu, alpha, sample, seed=None, sampler=box_muller_normal, noise_shape=None):
  """Learned additive noise (a regularizer baseline): mu + softplus(alpha) * eps when
  sampling, mu otherwise (the noise's mean). Arguments as multiplicative_noise."""
  if not sample:
    return mu
  shape = tf.shape(alpha) if noise_shape is None else noise_shape
  return mu + tf.nn.softplus(alpha) * sampler(shape, seed, alpha.dtype)


def fixed_noise(kind: str, scale: float):
  """Noise of a set scale s that nothing learns (the paper's "meta-learned or fixed?"
  baselines): 'fixed_mult' mu * (1 + s * eps), 'fixed_add' mu + s * eps when sampling, mu
  otherwise. Returns a function with multiplicative_noise's arguments (alpha is ignored; its
  shape gives the noise's shape when noise_shape is None)."""
  def noise(mu, alpha, sample, seed=None, sampler=box_muller_normal, noise_shape=None):
    if not sample:
      return mu
    shape = tf.shape(alpha) if noise_shape is None else noise_shape
    eps = scale * sampler(shape, seed, mu.dtype)
    return mu * (1 + eps) if kind == 'fixed_mult' else mu + eps
  return noise


INFO_DROPOUT_MAX = 0.7  # Achille & Soatto cap the log-normal noise's std at 0.7


def information_dropout_scale(alpha):
  """Information dropout's noise std a(x) = INFO_DROPOUT_MAX * sigmoid(alpha), in (0, 0.7)."""
  return INFO_DROPOUT_MAX * tf.sigmoid(alpha)


def information_dropout(mu, alpha, sample, seed=None, sampler=box_muller_normal,
                        noise_shape=None):
  """Information dropout (Achille & Soatto 2018): mu * exp(a(x) eps), log-normal
  multiplicative noise of learned std a(x) (information_dropout_scale), when sampling; mu
  otherwise. Arguments as multiplicative_noise."""
  if not sample:
    return mu
  shape = tf.shape(alpha) if noise_shape is None else noise_shape
  return mu * tf.exp(information_dropout_scale(alpha) * sampler(shape, seed, alpha.dtype))


def information_dropout_kl(alpha):
  """Elementwise KL of information dropout's noise to its log-uniform prior for ReLU
  activations, up to a constant: -log a(x) (Achille & Soatto 2018, proposition 4)."""
  return -tf.math.log(information_dropout_scale(alpha))


BLOCK_NOISES = {'metadrop': multiplicative_noise, 'learned_add': additive_noise,
                'info_dropout': information_dropout}  # learned by phi, drawn in the blocks
# 'vib' (the variational information bottleneck) is learned noise on the features, drawn by
# the network (model.MetaDropoutNet.bottleneck); its blocks draw none.
LEARNED_NOISE_TYPES = tuple(BLOCK_NOISES) + ('vib',)
NOISE_TYPES = LEARNED_NOISE_TYPES + ('fixed_mult', 'fixed_add')
# The options each noise type reads (--noise_scale: the fixed noises' std; --noise_penalty: the
# weight of the bottlenecks' KL in the inner loss).
NOISE_OPTIONS = {'metadrop': (), 'learned_add': (), 'fixed_mult': ('noise_scale',),
                 'fixed_add': ('noise_scale',), 'info_dropout': ('noise_penalty',),
                 'vib': ('noise_penalty',)}
for _kind in NOISE_TYPES:
  components.declare('noise type', _kind, NOISE_OPTIONS[_kind])


def make_noise(kind: str = 'metadrop', scale: float = 0.0):
  """The block noise function of a --noise_type (NOISE_TYPES), with --noise_scale for the
  fixed kinds: (mu, alpha, sample, seed, sampler, noise_shape) -> perturbed mu; None for
  'vib', whose blocks draw no noise."""
  if kind in BLOCK_NOISES:
    return BLOCK_NOISES[kind]
  if kind == 'vib':
    return None
  if kind not in NOISE_TYPES:
    raise ValueError(f'unknown noise type {kind!r}; choose one of {NOISE_TYPES}')
  return fixed_noise(kind, scale)
