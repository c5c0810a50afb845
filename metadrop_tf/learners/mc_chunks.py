"""An inner step's support gradient over M noise samples taken in chunks, one after another
(--test_mc_chunks: the meta-test's memory holds one chunk's activations at a time)."""

from typing import Callable

import tensorflow as tf

from metadrop_tf import seeds as seeds_lib


def chunked_gradients(gradients: Callable, x: tf.Tensor, y: tf.Tensor, seed: tf.Tensor,
                      mc_samples: int, chunks: int) -> dict:
  """The mean of gradients(x, y, seed, copies) (a dict of tensors) over mc_samples noise
  samples, in min(chunks, mc_samples) chunks of sizes that differ by at most one (equal when
  they divide, as --test_mc_chunks asks; the monitoring evaluation's --eval_mc_samp need not),
  chunk c drawn from fold_seed(seed, seeds_lib.MC_CHUNK, c), weighted by its size.

  x: the support [n, H, W, C]; y: its labels tiled copy by copy [mc_samples * n, N]; seed [2].
  Each chunk starts after the previous one's gradient exists (its noise too).
  """
  chunks = min(chunks, mc_samples)
  sizes = [mc_samples // chunks + (c < mc_samples % chunks) for c in range(chunks)]
  total, previous = None, []
  for c, copies in enumerate(sizes):
    with tf.control_dependencies(previous):
      chunk_x = tf.identity(x)
      chunk_seed = tf.identity(seeds_lib.fold_seed(seed, seeds_lib.MC_CHUNK, c))
    # y is the labels tiled copy by copy: its first `copies` tiles are every chunk's.
    grads = gradients(chunk_x, y[:copies * x.shape[0]], chunk_seed, copies)
    weighted = {n: g * (copies / mc_samples) for n, g in grads.items()}
    total = weighted if total is None else {n: total[n] + weighted[n] for n in grads}
    previous = list(grads.values())
  return total
