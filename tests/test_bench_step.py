"""bench/step.py: a case that passes --max_rss_mb is stopped and reported, not run to the end."""

import json
import os
import subprocess
import sys

import pytest

STEP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bench',
                    'step.py')


@pytest.mark.slow
def test_a_case_over_the_memory_limit_is_stopped_and_reported():
  # TensorFlow's import alone passes 150 MB, so the case is stopped long before its step.
  result = subprocess.run(
      [sys.executable, STEP, '--case=omniglot_5shot_metadrop', '--iters=1', '--threads=1',
       '--n_steps=20', '--max_rss_mb=150', '--peak=100'], capture_output=True, text=True,
      timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{')]
  assert len(lines) == 1
  line = lines[0]
  assert line['case'] == 'omniglot_5shot_metadrop' and line['n_steps'] == 20
  assert line['exceeded_rss_mb'] == 150 and line['rss_at_stop_mb'] > 150
  assert 'median_s' not in line
