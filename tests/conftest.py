"""Keeps tests hermetic: each test leaves the pytest process as it found it.

- Signal handlers: the programs install their own SIGTERM / SIGINT handlers when a test runs
  them in this process; they are put back after the test, so a SIGTERM to pytest stops pytest.
- The working directory is restored after each test.
- Subprocesses: every process a test starts (subprocess.Popen, and run() / check_output() built
  on it) is killed when the test ends, if it is still running.
"""

import os
import signal
import subprocess

import pytest

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_STARTED: list[subprocess.Popen] = []


class _TrackedPopen(subprocess.Popen):
  """subprocess.Popen that remembers its process so that the test's teardown can end it."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    _STARTED.append(self)


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch):
  handlers = {s: signal.getsignal(s) for s in _SIGNALS}
  cwd = os.getcwd()
  monkeypatch.setattr(subprocess, 'Popen', _TrackedPopen)
  yield
  for process in _STARTED:
    if process.poll() is None:
      process.kill()
      process.wait()
  _STARTED.clear()
  for s, handler in handlers.items():
    signal.signal(s, handler)
  os.chdir(cwd)
