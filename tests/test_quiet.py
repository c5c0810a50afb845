"""Quiet start-up: TensorFlow's C++ start-up lines are dropped, everything else is kept."""

import os
import subprocess
import sys

import pytest

from helpers import REPO
from metadrop_tf.cli import quiet

STARTUP = [
    'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR',
    'I0000 00:00:1796402880.594813    2580 cudart_stub.cc:31] Could not find cuda drivers on '
    'your machine, GPU will not be used.',
    'I0000 00:00:1796402880.817985    2580 cpu_feature_guard.cc:227] This TensorFlow binary is '
    'optimized to use available CPU instructions in performance-critical operations.',
    'To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.',
    'E0000 00:00:1796402894.753555    2580 cuda_platform.cc:52] failed call to cuInit: INTERNAL: '
    'CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)',
    'I0000 00:00:1795561740.831583   31127 port.cc:153] oneDNN custom operations are on.',
]
KEPT = [
    'W0000 00:00:1796402894.753555    2580 op_kernel.cc:1857] OP_REQUIRES failed at x.cc:1',
    'UserWarning: something a library warns about',
    'error: --data_dir=x does not exist',
]


@pytest.mark.parametrize('line', STARTUP)
def test_startup_lines_are_recognized(line):
  assert quiet.is_startup_line(line)


@pytest.mark.parametrize('line', KEPT)
def test_other_lines_are_not(line):
  assert not quiet.is_startup_line(line)


def test_capture_keeps_what_is_not_startup_noise():
  def noisy():
    os.write(2, ('\n'.join(STARTUP + KEPT) + '\n').encode())
  text = quiet.run_captured(noisy)
  assert quiet.without_startup_lines(text) == KEPT


@pytest.mark.parametrize('argv, verbose', [
    (['train.py'], False), (['train.py', '--way=5'], False), (['train.py', '-v', '1'], True),
    (['train.py', '--verbosity=0'], True), (['train.py', '--v=2'], True)])
def test_verbosity_flags_bring_the_log_back(argv, verbose):
  assert quiet.verbose_requested(argv) == verbose


@pytest.mark.slow
def test_a_program_speaks_first_and_alone():
  """A user error of train.py: its one line is all of stderr (no TF start-up line), exit 2."""
  out = subprocess.run([sys.executable, 'train.py', '--n_train_iter=5'], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 2
  assert out.stderr.splitlines() == [
      "error: Unknown command line flag 'n_train_iter'. Did you mean: n_train_iters ? "
      '(--help lists the flags)']


@pytest.mark.slow
def test_verbosity_shows_tensorflow_startup_again():
  """The loud counterpart of test_a_program_speaks_first_and_alone (a quiet start, whose
  stderr holds the one error line): with -v the start-up lines are there."""
  code = 'from metadrop_tf.cli import quiet; quiet.start(["x", "-v", "0"]); import tensorflow'
  loud = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                        timeout=300)
  assert any(quiet.is_startup_line(line) for line in loud.stderr.splitlines())
