"""Tests of the per-program thread choice."""

import os
import subprocess
import sys

import pytest

import helpers
from metadrop_tf.runtime import threads


@pytest.mark.slow
def test_training_with_a_task_per_core_runs_one_thread_per_op():
  cores = len(os.sched_getaffinity(0))
  config = helpers.tiny_config(metabatch=cores)
  assert threads.op_threads(config, training=True) == (1, 0)
  assert threads.op_threads(config, training=False) == (0, 0)
  if cores > 1:
    assert threads.op_threads(config.replace(metabatch=cores - 1), training=True) == (0, 0)
  explicit = config.replace(intra_op_threads=3, inter_op_threads=2)
  assert threads.op_threads(explicit, training=True) == (3, 2)


def _configured_runtime(**env):
  """(intra-op threads, inter-op threads, whether the CPU allocator is BFC) of a fresh process
  that ran threads.configure, then an op; `env` added to its environment."""
  code = ('import tensorflow as tf, helpers; from metadrop_tf.runtime import threads; '
          'threads.configure(helpers.tiny_config(intra_op_threads=3, inter_op_threads=2), True); '
          'tf.constant(1.0) + 1; '
          'print(tf.config.threading.get_intra_op_parallelism_threads(), '
          'tf.config.threading.get_inter_op_parallelism_threads())\n'
          'try:\n  print(tf.config.experimental.get_memory_info("CPU:0")["peak"] > 0)\n'
          'except ValueError:\n  print("no-stats")')  # only BFC keeps allocator statistics
  environ = {k: v for k, v in os.environ.items() if k != threads.BFC_ALLOCATOR}
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.abspath(__file__)),
                       env={**environ, **env,
                            'PYTHONPATH': os.pathsep.join([helpers.REPO, '.'])})
  return out.stdout.split()


@pytest.mark.slow
def test_configure_sets_the_runtime_pools_and_the_bfc_allocator_unless_told_otherwise():
  assert _configured_runtime() == ['3', '2', 'True']
  # TF's default allocator keeps no statistics: on some CPUs the call raises, on others (seen on
  # an AVX-512 Zen 4) it answers with a peak of 0.
  intra, inter, stats = _configured_runtime(**{threads.BFC_ALLOCATOR: 'false'})
  assert (intra, inter) == ('3', '2') and stats in ('no-stats', 'False')
