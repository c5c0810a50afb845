"""Tests of the task objectives: the losses and metrics against hand computations."""

import numpy as np
import pytest
import tensorflow as tf

from metadrop_tf import objectives


def test_regression_is_the_mean_squared_error():
  predictions = np.array([[1.0], [2.0], [-1.5]])
  targets = np.array([[0.5], [2.0], [0.5]])
  expected = np.mean((predictions - targets) ** 2)
  loss = objectives.REGRESSION.loss(tf.constant(predictions), tf.constant(targets))
  metric = objectives.REGRESSION.metric(tf.constant(predictions), tf.constant(targets))
  assert loss.dtype == tf.float64 and metric.dtype == tf.float32
  np.testing.assert_allclose(float(loss), expected, rtol=1e-12)
  np.testing.assert_allclose(float(metric), expected, rtol=1e-6)


def test_classification_is_cross_entropy_and_accuracy():
  logits = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])
  labels = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  expected = -np.mean((labels * log_softmax).sum(axis=1))
  objective = objectives.CLASSIFICATION
  np.testing.assert_allclose(float(objective.loss(tf.constant(logits), tf.constant(labels))),
                             expected, rtol=1e-12)
  assert float(objective.metric(tf.constant(logits), tf.constant(labels))) == 0.5


def test_results_are_described_in_their_units():
  assert objectives.CLASSIFICATION.describe(96.784, 0.512) == 'accuracy 96.78 +- 0.51 %'
  assert objectives.REGRESSION.describe(0.51234, 0.0412) == 'mse 0.5123 +- 0.041'
  assert objectives.REGRESSION.pre_key == 'mse_pre'
  assert objectives.CLASSIFICATION.format(66.666) == '66.67 %'
  assert objectives.REGRESSION.format(1.23456) == '1.235'


def test_hits_mark_the_rows_whose_argmax_is_the_label():
  logits = tf.constant([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0], [0.0, 5.0, 1.0]])
  labels = tf.constant([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
  hits = objectives.hits(logits, labels)
  assert hits.dtype == tf.float32 and hits.numpy().tolist() == [1.0, 0.0, 1.0]
  assert float(objectives.accuracy(logits, labels)) == pytest.approx(2 / 3)
