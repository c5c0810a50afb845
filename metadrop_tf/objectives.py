"""What a task scores: the loss a learner adapts and meta-trains on, and the metric reported.

Classification (the image datasets): softmax cross-entropy of logits [n, N] against one-hot
labels [n, N], reported as accuracy. Regression (sinusoid): mean squared error of predictions
[n, D] against targets [n, D], reported as that error. Learners, training, evaluation and
export ask the run's Objective instead of assuming classification.
"""

from typing import Callable
from typing import NamedTuple

import tensorflow as tf

from metadrop_tf import config as config_lib


def mean_squared_error(predictions: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
  """Mean over every element of (predictions - targets)^2; both [n, D]."""
  targets = tf.cast(targets, predictions.dtype)
  return tf.reduce_mean(tf.square(predictions - targets))


def _float32_mse(predictions, targets):
  return tf.cast(mean_squared_error(predictions, targets), tf.float32)


def cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """Mean softmax cross-entropy; logits [n, N], one-hot labels [n, N]."""
  labels = tf.cast(labels, logits.dtype)
  return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def hits(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """1.0 where a row's argmax matches its one-hot label, else 0.0: float32 [rows] (logits and
  labels [rows, N])."""
  return tf.cast(tf.equal(tf.argmax(logits, axis=-1), tf.argmax(labels, axis=-1)), tf.float32)


def accuracy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """Fraction of rows whose argmax matches the one-hot label: float32 scalar."""
  return tf.reduce_mean(hits(logits, labels))


class Objective(NamedTuple):
  """loss(outputs, targets) -> scalar in the outputs' dtype (what is differentiated);
  metric(outputs, targets) -> float32 scalar (what is reported). `key` names the metric in
  per-task outputs ('acc', with 'acc_pre' before adaptation); `result` names it in
  eval_<split>.json ('accuracy', 'per_episode_accuracy', ...), `scale` and `unit` format it
  (accuracy is reported in percent)."""
  name: str
  loss: Callable
  metric: Callable
  key: str
  result: str
  scale: float
  unit: str
  higher_is_better: bool

  @property
  def pre_key(self) -> str:
    return f'{self.key}_pre'

  def format(self, value: float) -> str:
    """A reported value (already scaled) with its unit: '96.78 %' or '0.5123'."""
    return f'{value:.2f} {self.unit}' if self.unit else f'{value:.4g}'

  def describe(self, value: float, ci95: float) -> str:
    """E.g. 'accuracy 96.78 +- 0.51 %' or 'mse 0.5123 +- 0.041'."""
    if self.unit:
      return f'{self.result} {value:.2f} +- {ci95:.2f} {self.unit}'
    return f'{self.result} {value:.4g} +- {ci95:.2g}'


CLASSIFICATION = Objective('classification', cross_entropy, accuracy,
                           key='acc', result='accuracy', scale=100.0, unit='%',
                           higher_is_better=True)
REGRESSION = Objective('regression', mean_squared_error, _float32_mse, key='mse', result='mse',
                       scale=1.0, unit='', higher_is_better=False)
OBJECTIVES = {o.name: o for o in (CLASSIFICATION, REGRESSION)}


def for_config(config: config_lib.Config) -> Objective:
  """The objective of a Config's dataset."""
  return OBJECTIVES[config.info.objective]
