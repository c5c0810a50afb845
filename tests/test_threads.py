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


@pytest.mark.slow
def test_configure_sets_the_runtime_pools():
  code = ('import tensorflow as tf, helpers; from metadrop_tf.runtime import threads; '
          'threads.configure(helpers.tiny_config(intra_op_threads=3, inter_op_threads=2), True); '
          'tf.constant(1.0) + 1; '
          'print(tf.config.threading.get_intra_op_parallelism_threads(), '
          'tf.config.threading.get_inter_op_parallelism_threads())')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.abspath(__file__)),
                       env={**os.environ, 'PYTHONPATH': os.pathsep.join([helpers.REPO, '.'])})
  assert out.stdout.split() == ['3', '2']
