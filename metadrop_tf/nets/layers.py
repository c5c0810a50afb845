"""Pure math of one forward pass: conv product, batch norm, mixup, noisy block and head (the
noise distributions: noise.py).

No variables live here; every weight comes in as a tensor so the inner loop can pass fast
weights. Shapes: images and feature maps are NHWC, `n` is the number of images of one call.
"""

from typing import Callable
from typing import NamedTuple

import tensorflow as tf

from metadrop_tf.nets import noise as noise_lib

BN_EPSILON = 1e-3


def conv2d(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor,
           compute_dtype: str | tf.DType | None = None) -> tf.Tensor:
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


def batch_norm(x: tf.Tensor, offset: tf.Tensor, groups: int = 1) -> tf.Tensor:
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


def batch_norm_reference(x: tf.Tensor, offset: tf.Tensor, groups: int = 1) -> tf.Tensor:
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


def moments(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Mean and (biased) variance of x [n, H, W, C] over n, H and W: [C] each, written out
  (exact to any order: no stop-gradient as in tf.nn.moments)."""
  mean = tf.reduce_mean(x, axis=[0, 1, 2])
  return mean, tf.reduce_mean(tf.square(x - mean), axis=[0, 1, 2])


def normalize(x: tf.Tensor, offset: tf.Tensor, statistics: list) -> tf.Tensor:
  """Inductive batch norm, offset only: x [n, H, W, C] normalized with given statistics
  (mean, variance: [C] each; e.g. a support set's), so each image's output depends on that
  image alone."""
  mean, variance = statistics
  return (x - mean) * tf.math.rsqrt(variance + BN_EPSILON) + offset


class Mixing(NamedTuple):
  """Mixup of one batch (Zhang et al. 2018; manifold mixup, Verma et al. 2019): at mixable
  layer `layer` (int32 scalar; 0 = the input), h <- lam * h + (1 - lam) * h[perm]."""
  layer: tf.Tensor
  lam: tf.Tensor
  perm: tf.Tensor  # [n] int32, a permutation of the batch


def mix(h: tf.Tensor, lam: tf.Tensor, perm: tf.Tensor) -> tf.Tensor:
  """lam * h + (1 - lam) * h[perm] along the batch axis (inputs, features or labels)."""
  return lam * h + (1 - lam) * tf.gather(h, perm)


def mixed_at(h: tf.Tensor, mixing: Mixing | None, layer: int) -> tf.Tensor:
  """h mixed if `mixing` (a Mixing or None) chose mixable layer `layer`, else h."""
  if mixing is None:
    return h
  return tf.where(tf.equal(mixing.layer, layer), mix(h, tf.cast(mixing.lam, h.dtype),
                                                      mixing.perm), h)


def norm(h: tf.Tensor, offset: tf.Tensor, groups: int = 1,
         statistics: list | None = None) -> tf.Tensor:
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


def conv_block(x: tf.Tensor, theta_kernel: tf.Tensor, theta_bias: tf.Tensor, offset: tf.Tensor,
               phi_kernel: tf.Tensor | None = None, phi_bias: tf.Tensor | None = None,
               sample: bool = False, seed: tf.Tensor | None = None, groups: int = 1,
               compute_dtype: str | tf.DType | None = None,
               sampler: Callable = noise_lib.box_muller_normal, statistics: list | None = None,
               return_statistics: bool = False, shift: tf.Tensor | None = None,
               noise: Callable = noise_lib.multiplicative_noise) -> tf.Tensor | tuple:
  """conv -> noise -> batch norm [+ shift] -> ReLU -> 2x2 max-pool: [n,H,W,Cin] ->
  [n,H/2,W/2,C].

  statistics: (mean, variance) [C] for inductive batch norm (norm), None for the batch's.
  return_statistics: also return the batch's (mean, variance) before the norm (moments; the
  block then normalizes with them, one group). shift: per image and channel [n, C] (or [C]),
  added before the ReLU (_normalize_and_pool). noise: how alpha perturbs mu (noise_lib.make_noise;
  default Meta Dropout's noise_lib.multiplicative_noise).

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


def conv_block_copies(x: tf.Tensor, theta_kernel: tf.Tensor, theta_bias: tf.Tensor,
                      offset: tf.Tensor, phi_kernel: tf.Tensor | None = None,
                      phi_bias: tf.Tensor | None = None, copies: int = 1, sample: bool = False,
                      seed: tf.Tensor | None = None, compute_dtype: str | tf.DType | None = None,
                      sampler: Callable = noise_lib.box_muller_normal,
                      noise: Callable = noise_lib.multiplicative_noise) -> tf.Tensor:
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


def noisy_head(features: tf.Tensor, theta_kernel: tf.Tensor, theta_bias: tf.Tensor,
               phi_kernel: tf.Tensor | None = None, phi_bias: tf.Tensor | None = None,
               sample: bool = False, seed: tf.Tensor | None = None,
               sampler: Callable = noise_lib.box_muller_normal) -> tf.Tensor:
  """Logits [n, N] from features [n, F]: mu = f W + b, plus softplus(f w_phi + b_phi) * eps.

  phi_kernel is ONE column [F, 1] (bias [1]) broadcast to all N classes, so the noise does not
  depend on the class count. Without sampling (or without phi) the logits are mu.
  """
  mu = tf.matmul(features, theta_kernel) + theta_bias
  if phi_kernel is None or not sample:
    return mu
  scale = tf.nn.softplus(tf.matmul(features, phi_kernel) + phi_bias)  # [n, 1]
  return mu + scale * sampler(tf.shape(mu), seed, mu.dtype)
