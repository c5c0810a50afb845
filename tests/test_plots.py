"""Tests of the figures: the robustness plot from attacked evaluation results."""

import pytest

plots = pytest.importorskip('metadrop_tf.export.plots')


def _result(norm, accuracies):
  return {'accuracy': 90.0, 'ci95': 1.0, 'attack': {'norm': norm},
          'attacked': [{'eps': e, 'accuracy': a, 'ci95': 1.5}
                       for e, a in zip((0.01, 0.05), accuracies)]}


def test_robustness_plot_writes_a_png(tmp_path):
  path = plots.plot_robustness({'maml': _result('linf', [70, 30]),
                                'metadrop': _result('linf', [80, 50])},
                               str(tmp_path / 'r.png'), 'Omniglot 1-shot')
  data = open(path, 'rb').read()
  assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 5000
