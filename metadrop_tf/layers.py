"""Pure math of one forward pass: conv product, multiplicative noise, batch norm, noisy head.

No variables live here; every weight comes in as a tensor so the inner loop can pass fast
weights. Shapes: images and feature maps are NHWC, `n` is the number of images of one call.
"""

import math
from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from metadrop_tf import components

tfd = tfp.distributions

BN_EPSILON = 1e-3


def conv2d(x, kernel, bias, compute_dtype=None):
  """3x3, stride 1, SAME convolution plus bias: [n,H,W,Cin] x [3,3,Cin,Cout] -> [n,H,W,Cout].

  With `compute_dtype` (e.g. tf.bfloat16) the product runs in that dtype and is cast back, so
  weights, gradients and everything after the convolution stay in x's dtype.
  """
  if compute_dtype is None or tf.as_dtype(compute_dtype) == x.dtype:
    out = tf.nn.conv2d(x, kernel, strides=1, padding='SAME')
  else:
    out = tf.nn.conv2d(tf.cast(x, compute_dtype), tf.cast(kernel, compute_dtype),
                       strides=1, padding='SAME')
    out = tf.cast(out, x.dtype)
  return out + bias


def batch_norm(x, offset, groups=1):
  """Transductive batch norm, offset only: normalizes with the statistics of the batch given.

  x: [groups * n, H, W, C]; each of the `groups` consecutive blocks of n images is normalized
  with its own mean and (biased) variance: one block per Monte-Carlo copy of a support set.
  offset: [C]. Returns x's shape. float32 / bfloat16 use TF's fused kernel (one op, and its
  second-order gradient is exact, like the reference's); float64, which that kernel lacks,
  uses the written-out statistics. Both agree to float32 precision (tests/test_layers.py).
  """
  if x.dtype == tf.float64:
    return batch_norm_reference(x, offset, groups)
  if groups == 1:
    return _fused_batch_norm(x, offset)
  # Put the groups on the channel axis, where the fused kernel keeps statistics apart.
  shape = tf.shape(x)
  grouped = tf.reshape(x, tf.concat([[groups, -1], shape[1:]], axis=0))
  by_channel = tf.transpose(grouped, [1, 2, 3, 0, 4])  # [n, H, W, groups, C]
  merged = tf.reshape(by_channel, tf.concat([tf.shape(by_channel)[:3], [-1]], axis=0))
  normalized = _fused_batch_norm(merged, tf.tile(offset, [groups]))
  split = tf.reshape(normalized, tf.shape(by_channel))
  return tf.reshape(tf.transpose(split, [3, 0, 1, 2, 4]), shape)


def _fused_batch_norm(x, offset):
  out, _, _ = tf.compat.v1.nn.fused_batch_norm(
      x, tf.ones_like(offset), offset, epsilon=BN_EPSILON, is_training=True)
  return out


def batch_norm_reference(x, offset, groups=1):
  """batch_norm with the statistics written out (any dtype, exact to any order).

  The variance is the mean squared deviation from the mean, WITHOUT the stop-gradient of
  tf.nn.moments, which would make second-order meta-gradients wrong.
  """
  shape = tf.shape(x)
  grouped = tf.reshape(x, tf.concat([[groups, -1], shape[1:]], axis=0))
  mean = tf.reduce_mean(grouped, axis=[1, 2, 3], keepdims=True)
  centered = grouped - mean
  variance = tf.reduce_mean(tf.square(centered), axis=[1, 2, 3], keepdims=True)
  normalized = centered * tf.math.rsqrt(variance + BN_EPSILON)
  return tf.reshape(normalized, shape) + offset


def moments(x):
  """Mean and (biased) variance of x [n, H, W, C] over n, H and W: [C] each, written out
  (exact to any order: no stop-gradient as in tf.nn.moments)."""
  mean = tf.reduce_mean(x, axis=[0, 1, 2])
  return mean, tf.reduce_mean(tf.square(x - mean), axis=[0, 1, 2])


def normalize(x, offset, statistics):
  """Inductive batch norm, offset only: x [n, H, W, C] normalized with given statistics
  (mean, variance: [C] each; e.g. a support set's), so each image's output depends on that
  image alone."""
  mean, variance = statistics
  return (x - mean) * tf.math.rsqrt(variance + BN_EPSILON) + offset


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


class Mixing(NamedTuple):
  """Mixup of one batch (Zhang et al. 2018; manifold mixup, Verma et al. 2019): at mixable
  layer `layer` (int32 scalar; 0 = the input), h <- lam * h + (1 - lam) * h[perm]."""
  layer: tf.Tensor
  lam: tf.Tensor
  perm: tf.Tensor  # [n] int32, a permutation of the batch


def mix(h, lam, perm):
  """lam * h + (1 - lam) * h[perm] along the batch axis (inputs, features or labels)."""
  return lam * h + (1 - lam) * tf.gather(h, perm)


def mixed_at(h, mixing, layer: int):
  """h mixed if `mixing` (a Mixing or None) chose mixable layer `layer`, else h."""
  if mixing is None:
    return h
  return tf.where(tf.equal(mixing.layer, layer), mix(h, tf.cast(mixing.lam, h.dtype),
                                                      mixing.perm), h)


def norm(h, offset, groups=1, statistics=None):
  """The batch norm of a block: batch_norm (transductive: the batch's statistics, per group)
  or, given statistics (mean, variance), normalize (inductive)."""
  if statistics is None:
    return batch_norm(h, offset, groups)
  return normalize(h, offset, statistics)


def _normalize_and_pool(h, offset, groups, statistics=None, shift=None):
  """batch norm (per group, or with given statistics) [+ shift] -> ReLU -> 2x2 max-pool:
  [n,H,W,C] -> [n,H/2,W/2,C]. shift: [n, C] or [C], added to every position of the
  normalized map (conditionally shifted neurons, learners/csn.py)."""
  h = norm(h, offset, groups, statistics)
  if shift is not None:
    h = h + (shift[:, None, None, :] if shift.shape.rank == 2 else shift)
  h = tf.nn.relu(h)
  return tf.nn.max_pool2d(h, ksize=2, strides=2, padding='VALID')


def conv_block(x, theta_kernel, theta_bias, offset, phi_kernel=None, phi_bias=None,
               sample=False, seed=None, groups=1, compute_dtype=None, sampler=box_muller_normal,
               statistics=None, return_statistics=False, shift=None,
               noise=multiplicative_noise):
  """conv -> noise -> batch norm [+ shift] -> ReLU -> 2x2 max-pool: [n,H,W,Cin] ->
  [n,H/2,W/2,C].

  statistics: (mean, variance) [C] for inductive batch norm (norm), None for the batch's.
  return_statistics: also return the batch's (mean, variance) before the norm (moments; the
  block then normalizes with them, one group). shift: per image and channel [n, C] (or [C]),
  added before the ReLU (_normalize_and_pool). noise: how alpha perturbs mu (make_noise;
  default Meta Dropout's multiplicative_noise).

  With phi (Meta Dropout) mu and alpha are two convolutions of the same input; without phi
  (MAML) there is no noise at all. (One convolution with the kernels concatenated, then split,
  was measured 10-15% slower per meta-step on CPU: the split copies cost more than it saves.)
  """
  h = conv2d(x, theta_kernel, theta_bias, compute_dtype)
  if phi_kernel is not None:
    h = noise(h, conv2d(x, phi_kernel, phi_bias, compute_dtype), sample, seed, sampler)
  if return_statistics:
    statistics = moments(h)
    return _normalize_and_pool(h, offset, groups, statistics, shift), statistics
  return _normalize_and_pool(h, offset, groups, statistics, shift)


def conv_block_copies(x, theta_kernel, theta_bias, offset, phi_kernel=None, phi_bias=None,
                      copies=1, sample=False, seed=None, compute_dtype=None,
                      sampler=box_muller_normal, noise=multiplicative_noise):
  """conv_block on `copies` noise samples of the same images: [n,H,W,Cin] -> [copies*n,H/2,W/2,C].

  The outputs are stacked copy by copy, and each copy is normalized with its own statistics,
  like conv_block(tile(x), ..., groups=copies). mu and alpha are the same for every copy, so
  they are computed once, [n,H,W,1,C], and broadcast against noise drawn as [n,H,W,copies,C]:
  the copies sit side by side on the channel axis, where batch norm keeps them apart without
  transposes, and one transpose of the 4x smaller pooled map stacks them on the batch axis.
  (Broadcasting instead of tiling the kernels: 15% less time for this block, which dominates
  the meta-test, and the gradient sums the copies before the convolution's backward.)
  """
  if copies == 1:
    return conv_block(x, theta_kernel, theta_bias, offset, phi_kernel, phi_bias, sample, seed,
                      compute_dtype=compute_dtype, sampler=sampler, noise=noise)
  mu = conv2d(x, theta_kernel, theta_bias, compute_dtype)
  shape, channels = tf.shape(mu), theta_kernel.shape[-1]
  by_copy = tf.concat([shape[:3], [copies, channels]], axis=0)  # [n, H, W, copies, C]
  h = mu[:, :, :, None, :]
  if phi_kernel is not None:
    alpha = conv2d(x, phi_kernel, phi_bias, compute_dtype)[:, :, :, None, :]
    h = noise(h, alpha, sample, seed, sampler, noise_shape=by_copy)
  if phi_kernel is None or not sample:  # no noise: every copy is the same
    h = tf.broadcast_to(h, by_copy)
  h = tf.reshape(h, tf.concat([shape[:3], [-1]], axis=0))
  h = _normalize_and_pool(h, tf.tile(offset, [copies]), groups=1)  # [n, H/2, W/2, copies * C]
  pooled = tf.shape(h)
  h = tf.reshape(h, tf.concat([pooled[:3], [copies, channels]], axis=0))
  return tf.reshape(tf.transpose(h, [3, 0, 1, 2, 4]),
                    tf.concat([[copies * pooled[0]], pooled[1:3], [-1]], axis=0))


def noisy_head(features, theta_kernel, theta_bias, phi_kernel=None, phi_bias=None,
               sample=False, seed=None, sampler=box_muller_normal):
  """Logits [n, N] from features [n, F]: mu = f W + b, plus softplus(f w_phi + b_phi) * eps.

  phi_kernel is ONE column [F, 1] (bias [1]) broadcast to all N classes, so the noise does not
  depend on the class count. Without sampling (or without phi) the logits are mu.
  """
  mu = tf.matmul(features, theta_kernel) + theta_bias
  if phi_kernel is None or not sample:
    return mu
  scale = tf.nn.softplus(tf.matmul(features, phi_kernel) + phi_bias)  # [n, 1]
  return mu + scale * sampler(tf.shape(mu), seed, mu.dtype)
