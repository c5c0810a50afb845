"""Tests of the reported summaries: the 95% interval and the training-log window."""

import numpy as np
import pytest

from metadrop_tf import metrics


def test_mean_ci95_formula():
  values = [0.5, 0.7, 0.9, 1.0]
  mean, ci = metrics.mean_ci95(values)
  assert mean == pytest.approx(0.775)
  assert ci == pytest.approx(1.96 * np.std(values) / 2)
  with pytest.raises(ValueError):
    metrics.mean_ci95([])


def test_window_average_resets():
  window = metrics.WindowAverage()
  window.add({'loss': 1.0})
  window.add({'loss': 3.0})
  assert len(window) == 2 and window.result() == {'loss': 2.0}
  assert len(window) == 0


def test_window_averages_each_key_over_the_steps_that_reported_it():
  window = metrics.WindowAverage()
  window.add({'loss': 1.0, 'loss_pre': 4.0})
  window.add({'loss': 2.0})
  window.add({'loss': float('nan')})
  result = window.result()
  assert len(result) == 2 and result['loss_pre'] == 4.0
  assert np.isnan(result['loss'])  # a diverged step shows, it is not skipped
