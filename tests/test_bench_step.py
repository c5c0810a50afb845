"""bench/step.py: a case that passes --max_rss_mb is stopped and reported, not run to the end;
the CPU a result line names."""

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


@pytest.fixture
def step(monkeypatch):
  """bench/step.py as a module. Its import sets TF_CPP_MIN_LOG_LEVEL if unset and extends
  sys.path; both are restored after the test, so later tests in this process see neither."""
  monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', os.environ.get('TF_CPP_MIN_LOG_LEVEL', '0'))
  monkeypatch.syspath_prepend(os.path.dirname(STEP))
  import step as module  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  return module


@pytest.mark.parametrize('flag_line, unit', [
    ('fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile', 'AMX'),
    ('fpu sse2 avx2 avx512f avx512bw avx512_bf16', 'AVX-512, no AMX'),
    ('fpu sse2 avx avx2 fma', 'AVX2, no AVX-512'),
    ('fpu sse2 avx', 'no AVX2'),
])
def test_cpu_model_names_the_widest_vector_unit(tmp_path, step, flag_line, unit):
  # Two cores, as /proc/cpuinfo lists them: the first core's lines are read.
  core = f'processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {flag_line}\n\n'
  (tmp_path / 'cpuinfo').write_text(core + core.replace(': 0', ': 1'))
  assert step.cpu_model(str(tmp_path / 'cpuinfo')) == f'AMD EPYC ({unit})'


def test_cpu_model_without_flags_is_the_name_alone(tmp_path, step):
  (tmp_path / 'cpuinfo').write_text('processor\t: 0\nmodel name\t: Some CPU\n')
  assert step.cpu_model(str(tmp_path / 'cpuinfo')) == 'Some CPU'
