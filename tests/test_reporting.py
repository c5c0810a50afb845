"""train.log lines of the Reporter: window averages, and the pre-adaptation metrics only from
windows that computed them (every --pre_adapt_freq iterations)."""

import os

import helpers
from metadrop_tf.train import reporting


def test_a_window_without_pre_adaptation_metrics_logs_none(tmp_path):
  config = helpers.tiny_config()
  reporter = reporting.Reporter(str(tmp_path), config, start=0, progress=False)
  reporter.add({'loss': 1.0, 'acc': 0.5, 'loss_pre': 3.0, 'acc_pre': 0.25})
  reporter.add({'loss': 2.0, 'acc': 0.25})
  reporter.train_window(2, {'meta_lr': 0.001})
  reporter.add({'loss': 0.5, 'acc': 0.75})
  reporter.train_window(3, {})
  reporter.close()
  lines = open(os.path.join(str(tmp_path), 'train.log')).read().splitlines()
  assert 'train | iteration 2 |' in lines[0]
  assert lines[0].endswith('| loss 1.5000 acc 0.3750 | pre loss 3.0000 acc 0.2500'), lines[0]
  assert lines[1].endswith('| loss 0.5000 acc 0.7500') and 'train | iteration 3 |' in lines[1]
  assert 'nan' not in '\n'.join(lines)
