"""Episodes: a seeded sampler of tasks over a split's images and the tf.data pipeline that
batches, augments and converts them (shards are loaded by data.py).

Episode index i of a stream is a pure function of (seed, split, i), so a resumed run or a
repeated evaluation sees exactly the same tasks.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from metadrop_tf import config as config_lib
from metadrop_tf import seeds as seeds_lib
from metadrop_tf.episodes import data
from metadrop_tf.episodes import sinusoid


class Episode(NamedTuple):
  """A meta-batch of B tasks, N-way K-shot with Q queries, ordered class by class.

  Images are float32 in [0, 1]; labels are one-hot by the class's position in the task.
  A regression task (sinusoid) has inputs [B, K, 1] / [B, Q, 1] and targets of the same
  shapes in place of images and labels (`way` is then 1).
  """
  support_x: tf.Tensor  # [B, N*K, H, W, C]
  support_y: tf.Tensor  # [B, N*K, N]
  query_x: tf.Tensor  # [B, N*Q, H, W, C]
  query_y: tf.Tensor  # [B, N*Q, N]

  @property
  def way(self) -> int:
    return self.support_y.shape[-1]

  @property
  def shot(self) -> int:
    return self.support_x.shape[1] // self.way

  @property
  def query(self) -> int:
    return self.query_x.shape[1] // self.way


class EpisodeSampler:
  """Draws tasks from one split; task i depends only on (seed, split, i)."""

  def __init__(self, images, way, shot, query, seed, split='train'):
    data.check_episode_fits(images, way, shot, query, split)
    self.images = images
    self.way, self.shot, self.query = way, shot, query
    self.seed, self.split_id = seed, data.SPLIT_IDS[split]

  def task_indices(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes [N], instances [N, K+Q]): N distinct classes, K+Q distinct instances each."""
    rng = np.random.default_rng([self.seed, self.split_id, index])
    n_classes, n_instances = self.images.shape[:2]
    counts = getattr(self.images, 'counts', None)  # a RaggedShard: each class's own count
    classes = rng.choice(n_classes, self.way, replace=False)
    instances = np.stack([
        rng.choice(n_instances if counts is None else counts[c], self.shot + self.query,
                   replace=False) for c in classes])
    return classes, instances

  def task(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 support [N*K, H, W, C], query [N*Q, H, W, C], class-major (labels implicit)."""
    classes, instances = self.task_indices(index)
    order = np.argsort(classes)  # read classes in storage order: faster on a memory map
    picked = np.empty((self.way, self.shot + self.query) + self.images.shape[2:], np.uint8)
    if isinstance(self.images, data.RaggedShard):
      picked[order] = self.images.gather(classes[order], instances[order])
    else:
      picked[order] = self.images[classes[order][:, None], instances[order]]
    shape = self.images.shape[2:]
    return (picked[:, :self.shot].reshape((-1,) + shape),
            picked[:, self.shot:].reshape((-1,) + shape))

  def meta_batch(self, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 support [B, N*K, ...] and query [B, N*Q, ...] of tasks index*B .. index*B+B-1."""
    tasks = [self.task(index * size + b) for b in range(size)]
    return np.stack([t[0] for t in tasks]), np.stack([t[1] for t in tasks])


Sampler = EpisodeSampler | sinusoid.SinusoidSampler  # what make_dataset draws from


def make_sampler(config: config_lib.Config, split: str,
                 images: data.Images | None = None) -> Sampler:
  """The task sampler of a Config's split: EpisodeSampler over `images` (load_splits), or
  the generated dataset's (sinusoid.SinusoidSampler)."""
  if config.info.generated:
    return sinusoid.SinusoidSampler(config.shot, config.query, config.seed, split)
  return EpisodeSampler(images, config.way, config.shot, config.query, config.seed, split)


SHIFT_PIXELS = 2  # Omniglot (grayscale): random shifts of up to this many pixels
CROP_PADDING = 8  # natural images: random crop of the image padded by this many pixels
JITTER = 0.2  # natural images: brightness +- JITTER, contrast and saturation x (1 +- JITTER)


def augment(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Random augmentation of float images [M, H, W, C] in [0, 1], each image its own draw from
  the stateless seed (int32 [2]): grayscale images are shifted by up to SHIFT_PIXELS (zero
  padding, then a random crop); RGB images are randomly cropped from a CROP_PADDING-padded
  copy, flipped left-right, and colour-jittered (brightness, contrast, saturation), then
  clipped to [0, 1]. Omniglot's rotations are classes of the reference split, so it is never
  flipped or rotated. Shards without a channel axis ([M, H, W], Omniglot's) keep that shape.
  """
  if images.shape.rank == 3:
    return augment(images[..., None], seed)[..., 0]
  shape = images.shape[1:]
  rgb = shape[-1] == 3
  pad = CROP_PADDING if rgb else SHIFT_PIXELS
  seeds = tf.random.experimental.stateless_split(seed, tf.shape(images)[0] * 5)
  seeds = tf.reshape(seeds, [-1, 5, 2])
  padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])

  def one(args):
    image, s = args
    out = tf.image.stateless_random_crop(image, shape, s[0])
    if rgb:
      out = tf.image.stateless_random_flip_left_right(out, s[1])
      out = tf.image.stateless_random_brightness(out, JITTER, s[2])
      out = tf.image.stateless_random_contrast(out, 1 - JITTER, 1 + JITTER, s[3])
      out = tf.image.stateless_random_saturation(out, 1 - JITTER, 1 + JITTER, s[4])
      out = tf.clip_by_value(out, 0.0, 1.0)
    return out

  return tf.map_fn(one, (padded, seeds), fn_output_signature=tf.TensorSpec(shape, images.dtype))


def make_dataset(sampler: Sampler, metabatch: int,
                 start: int = 0, count: int | None = None,
                 augment_seed: int | None = None) -> tf.data.Dataset:
  """tf.data stream of Episode meta-batches start, start+1, ... (count of them, or forever).

  Sampling runs in parallel numpy calls; the order stays deterministic; output is prefetched.
  augment_seed: an int seed to augment every image (augment(); training with --augment):
  meta-batch i's draws depend only on (augment_seed, i). A generated sampler (sinusoid)
  gives its float inputs and targets as they are.
  """
  if getattr(sampler, 'generated', False):
    return _generated_dataset(sampler, metabatch, start, count)
  image_shape = sampler.images.shape[2:]
  way, shot, query = sampler.way, sampler.shot, sampler.query

  def augmented(images, index, part):
    if augment_seed is None:
      return images
    seed = tf.random.experimental.stateless_fold_in(
        tf.random.experimental.stateless_fold_in(
            tf.constant([augment_seed, seeds_lib.AUGMENT], tf.int64), index), part)
    flat = tf.reshape(images, (-1,) + image_shape)
    return tf.reshape(augment(flat, seed), images.shape)

  def draw(index):
    support, query_images = tf.numpy_function(
        lambda i: sampler.meta_batch(int(i), metabatch), [index], [tf.uint8, tf.uint8],
        stateful=False)
    support.set_shape((metabatch, way * shot) + image_shape)
    query_images.set_shape((metabatch, way * query) + image_shape)
    return Episode(augmented(to_float(support), index, 0), one_hot_labels(metabatch, way, shot),
                   augmented(to_float(query_images), index, 1),
                   one_hot_labels(metabatch, way, query))

  stop = start + count if count is not None else np.iinfo(np.int64).max
  indices = tf.data.Dataset.range(start, stop)
  return (indices.map(draw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
          .prefetch(tf.data.AUTOTUNE))


def _generated_dataset(sampler, metabatch, start, count):
  """make_dataset of a sampler whose meta_batch gives the four float32 arrays of an Episode
  ([B, K, D_in], [B, K, D_out], [B, Q, D_in], [B, Q, D_out]; sinusoid: D = 1)."""
  shapes = [(metabatch, n, 1) for n in (sampler.shot, sampler.shot, sampler.query,
                                        sampler.query)]

  def draw(index):
    parts = tf.numpy_function(lambda i: sampler.meta_batch(int(i), metabatch), [index],
                              [tf.float32] * 4, stateful=False)
    for part, shape in zip(parts, shapes):
      part.set_shape(shape)
    return Episode(*parts)

  stop = start + count if count is not None else np.iinfo(np.int64).max
  return (tf.data.Dataset.range(start, stop)
          .map(draw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
          .prefetch(tf.data.AUTOTUNE))


def to_float(images: tf.Tensor | np.ndarray) -> tf.Tensor:
  return tf.cast(images, tf.float32) / 255.0


def one_hot_labels(metabatch: int, way: int, per_class: int) -> tf.Tensor:
  """[B, N * per_class, N] one-hot: class i of the task is label i, class by class."""
  labels = tf.one_hot(tf.repeat(tf.range(way), per_class), way)
  return tf.tile(labels[None], [metabatch, 1, 1])
