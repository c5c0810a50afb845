"""The noise of noisy networks, as distributions of the activations given their mean mu and the
noise generator's output alpha: Meta Dropout's multiplicative noise and the baselines
(additive, fixed, information dropout), their samplers and the registry of noise types.

  register(name, make, options, learned, logits)   adds a noise type (a component with the
                                                   options it reads); a user's module can too
  make_noise(kind, scale, options)         the block noise function of a noise type
  options(config)                          the values of the settings a config's noise reads
"""

import math
from typing import Callable
from typing import Collection
from typing import Mapping
from typing import NamedTuple
from typing import Optional

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


def box_muller_normal(shape: tf.Tensor | tuple, seed: tf.Tensor,
                      dtype: str | tf.DType = tf.float32) -> tf.Tensor:
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


def tfp_normal(shape: tf.Tensor | tuple, seed: tf.Tensor,
               dtype: str | tf.DType = tf.float32) -> tf.Tensor:
  """N(0, 1) samples of `shape` drawn by tfp's Normal (TF's stateless normal kernel)."""
  return tfd.Normal(tf.zeros([], dtype), tf.ones([], dtype)).sample(shape, seed=seed)


SAMPLERS = {'box_muller': box_muller_normal, 'tfp': tfp_normal}


def multiplicative_noise(mu: tf.Tensor, alpha: tf.Tensor, sample: bool,
                         seed: tf.Tensor | None = None, sampler: Callable = box_muller_normal,
                         noise_shape: tf.Tensor | tuple | None = None) -> tf.Tensor:
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


def additive_noise(mu: tf.Tensor, alpha: tf.Tensor, sample: bool, seed: tf.Tensor | None = None,
                   sampler: Callable = box_muller_normal,
                   noise_shape: tf.Tensor | tuple | None = None) -> tf.Tensor:
  """Learned additive noise (a regularizer baseline): mu + softplus(alpha) * eps when
  sampling, mu otherwise (the noise's mean). Arguments as multiplicative_noise."""
  if not sample:
    return mu
  shape = tf.shape(alpha) if noise_shape is None else noise_shape
  return mu + tf.nn.softplus(alpha) * sampler(shape, seed, alpha.dtype)


def fixed_noise(kind: str, scale: float) -> Callable:
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


def information_dropout_scale(alpha: tf.Tensor) -> tf.Tensor:
  """Information dropout's noise std a(x) = INFO_DROPOUT_MAX * sigmoid(alpha), in (0, 0.7)."""
  return INFO_DROPOUT_MAX * tf.sigmoid(alpha)


def information_dropout(mu: tf.Tensor, alpha: tf.Tensor, sample: bool,
                        seed: tf.Tensor | None = None, sampler: Callable = box_muller_normal,
                        noise_shape: tf.Tensor | tuple | None = None) -> tf.Tensor:
  """Information dropout (Achille & Soatto 2018): mu * exp(a(x) eps), log-normal
  multiplicative noise of learned std a(x) (information_dropout_scale), when sampling; mu
  otherwise. Arguments as multiplicative_noise."""
  if not sample:
    return mu
  shape = tf.shape(alpha) if noise_shape is None else noise_shape
  return mu * tf.exp(information_dropout_scale(alpha) * sampler(shape, seed, alpha.dtype))


def information_dropout_kl(alpha: tf.Tensor) -> tf.Tensor:
  """Elementwise KL of information dropout's noise to its log-uniform prior for ReLU
  activations, up to a constant: -log a(x) (Achille & Soatto 2018, proposition 4)."""
  return -tf.math.log(information_dropout_scale(alpha))


class NoiseType(NamedTuple):
  """make(settings) -> the block noise function, given the values of the settings it reads (a
  dict: noise_scale and the options it declared): (mu, alpha, sample, seed, sampler,
  noise_shape) -> perturbed mu as multiplicative_noise, or None when the blocks draw none.
  learned: alpha (the noise generator phi) shapes it, so phi is meta-learned. logits: conv-4
  also draws Meta Dropout's logit noise (layers.noisy_head) with it."""
  make: Callable[[Mapping], Optional[Callable]]
  learned: bool
  logits: bool


REGISTRY = {}  # noise type name -> NoiseType


def register(name: str, make: Callable[[Mapping], Optional[Callable]],
             options: Collection[str] | Mapping = (), learned: bool = True,
             logits: bool = False) -> None:
  """Makes `name` a value of the noise_type setting: make(settings) gives its block noise
  function (NoiseType); `options` are the settings it reads beyond the core ones, as
  components.declare takes them (a noise type is a component)."""
  components.declare('noise type', name, options)
  REGISTRY[name] = NoiseType(make, learned, logits)


register('metadrop', lambda settings: multiplicative_noise, logits=True)
register('learned_add', lambda settings: additive_noise, logits=True)
register('info_dropout', lambda settings: information_dropout, ('noise_penalty',))
# The variational information bottleneck is learned noise on the features, drawn by the
# network (model.MetaDropoutNet.bottleneck); its blocks draw none.
register('vib', lambda settings: None, ('noise_penalty',))
for _kind in ('fixed_mult', 'fixed_add'):
  register(_kind, lambda settings, kind=_kind: fixed_noise(kind, settings['noise_scale']),
           ('noise_scale',),
           learned=False)


def make_noise(kind: str = 'metadrop', scale: float = 0.0,
               options: Optional[Mapping] = None) -> Optional[Callable]:
  """The block noise function of a registered noise type, with `scale` for the fixed kinds
  and `options` (options(config)) for those that declared their own: (mu, alpha, sample, seed,
  sampler, noise_shape) -> perturbed mu; None for 'vib', whose blocks draw no noise."""
  if kind not in REGISTRY:
    raise ValueError(f'unknown noise type {kind!r}; choose one of {sorted(REGISTRY)}')
  return REGISTRY[kind].make({'noise_scale': scale, **(options or {})})


def options(config: config_lib.Config) -> dict:
  """{setting: value} of the settings config.noise_type declared it reads."""
  declared = components.REGISTRY[('noise type', config.noise_type)].options
  return {name: getattr(config, name) for name in sorted(declared)}

