"""Per-class scores of a meta-test task, as an `extra` of Learner.task_outputs."""

import tensorflow as tf

from metadrop_tf import objectives
from metadrop_tf.learners import base as learner_base


def class_accuracies(learner: learner_base.Learner, state: dict, query_x: tf.Tensor,
                     query_y: tf.Tensor, seed: tf.Tensor) -> dict:
  """{'acc_class': [N]}: the query accuracy of each of the task's N classes after adaptation
  (query_y one-hot [N*Q, N], in any order; the deterministic forward, so `seed` is unused)."""
  del seed
  hits = objectives.hits(learner.predict(state, query_x), query_y)
  labels = tf.cast(query_y, tf.float32)
  return {'acc_class': tf.linalg.matvec(labels, hits, transpose_a=True)
                       / tf.reduce_sum(labels, axis=0)}
