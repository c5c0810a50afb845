"""Program start-up without TensorFlow's C++ start-up lines.

TensorFlow 2.21 writes its start-up lines (CUDA stub, cuInit, CPU features, oneDNN) from C++ to
file descriptor 2 before absl's logging is set up, so neither `TF_CPP_MIN_LOG_LEVEL` nor absl's
verbosity reaches them. `start()` imports TensorFlow and initializes its devices with descriptor 2
pointed at a temporary file, then writes back every captured line that is not one of those
start-up lines, so warnings and errors are kept. This module imports no TensorFlow at module level.
"""

import os
import re
import sys
import tempfile
from typing import Callable

from metadrop_tf.cli import lean_import

# The start-up lines of TensorFlow's C++ runtime on a machine without a GPU: an absl-C++ prefix
# (severity letter, date, time, thread, file:line) from one of these files, and the two
# continuation or header lines it prints with them.
STARTUP_SOURCES = ('cudart_stub.cc', 'cuda_platform.cc', 'cpu_feature_guard.cc', 'port.cc',
                   'cuda_dnn.cc', 'cuda_fft.cc', 'cuda_blas.cc', 'cuda_executor.cc',
                   'gpu_device.cc', 'computation_placer.cc', 'dso_loader.cc', 'cuda_diagnostics.cc')
_CPP_LINE = re.compile(r'^[IWEF]\d{4} [\d:.]+\s+\d+ (?P<source>[\w.]+):\d+\] ')
_STARTUP_TEXT = ('WARNING: All log messages before absl::InitializeLog() is called are written',
                 'To enable the following instructions:')
VERBOSE_ARGS = ('-v', '--v', '--verbosity', '--verbose')


def is_startup_line(line: str) -> bool:
  """True for one of TensorFlow's C++ start-up lines (see STARTUP_SOURCES)."""
  match = _CPP_LINE.match(line)
  if match:
    return match.group('source') in STARTUP_SOURCES
  return line.startswith(_STARTUP_TEXT)


def verbose_requested(argv: list[str]) -> bool:
  """True when the command line asks for more logging (`-v N`, `--verbosity=N`, `--v=N`)."""
  return any(arg.split('=')[0] in VERBOSE_ARGS for arg in argv[1:])


def run_captured(fn: Callable[[], None]) -> str:
  """Runs fn() with file descriptor 2 (stderr, Python's and C++'s) pointed at a temporary file;
  returns what was written there."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode='w+b') as capture:
    os.dup2(capture.fileno(), 2)
    try:
      fn()
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
    capture.seek(0)
    return capture.read().decode('utf-8', errors='replace')


def without_startup_lines(text: str) -> list[str]:
  """The non-empty lines of `text` that are not TensorFlow start-up lines."""
  return [line for line in text.splitlines() if line.strip() and not is_startup_line(line)]


def _import_tensorflow() -> None:
  with lean_import.refusing():  # Keras's optional imports the programs never use
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tensorflow_probability  # pylint: disable=g-import-not-at-top,unused-import  # noqa: F401
  tf.config.list_physical_devices()  # cuInit and friends log here


def start(argv: list[str] | None = None) -> None:
  """Imports TensorFlow quietly (unless `argv` asks for verbosity; see `verbose_requested`):
  its start-up lines are dropped, anything else it writes to stderr is written back."""
  argv = sys.argv if argv is None else argv
  if verbose_requested(argv):
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '0')
    _import_tensorflow()  # its start-up lines shown
    return
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  kept = without_startup_lines(run_captured(_import_tensorflow))
  if kept:
    print('\n'.join(kept), file=sys.stderr)
