"""Pieces every learner shares: the task loss and accuracy, and the stateless seed streams.

The learners themselves (inner loops, meta-objectives) live in metadrop_tf/learners/.
"""

import tensorflow as tf


def cross_entropy(logits, labels):
  """Mean softmax cross-entropy; logits [n, N], one-hot labels [n, N]."""
  labels = tf.cast(labels, logits.dtype)
  return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def accuracy(logits, labels):
  """Fraction of rows whose argmax matches the one-hot label: float32 scalar."""
  hits = tf.equal(tf.argmax(logits, axis=-1), tf.argmax(labels, axis=-1))
  return tf.reduce_mean(tf.cast(hits, tf.float32))


def fold_seed(seed, *indices):
  """A new stateless seed (int32 [2]) for sub-stream `indices` of `seed`."""
  for index in indices:
    seed = tf.random.experimental.stateless_fold_in(seed, index)
  return seed


def task_seeds(seed, first_task, n_tasks):
  """Seeds (int32 [2] each) of tasks first_task .. first_task + n_tasks - 1 of stream `seed`."""
  return [fold_seed(seed, first_task + b) for b in range(n_tasks)]


def stacked(per_task):
  """A list of B dicts of scalars -> one dict of [B] tensors."""
  return {k: tf.stack([t[k] for t in per_task]) for k in per_task[0]}
