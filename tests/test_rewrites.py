"""Tests of --bitwise_reproducible: grappler off, and two processes then agree bitwise."""

import os
import subprocess
import sys

import pytest
import tensorflow as tf

import helpers
from metadrop_tf.runtime import rewrites


def test_configure_turns_grappler_off_only_when_asked():
  assert not rewrites.rewrites_off()
  rewrites.configure(helpers.tiny_config())
  assert not rewrites.rewrites_off()
  try:
    rewrites.configure(helpers.tiny_config(bitwise_reproducible=True))
    assert rewrites.rewrites_off()
  finally:  # the option is the process's: give the next test the default back
    tf.config.optimizer.set_experimental_options({rewrites.OFF_OPTION: False})
  assert not rewrites.rewrites_off()


# One first-iteration MAML meta-gradient at Omniglot 28x28 shapes (5-way 1-shot, 5 queries,
# 4 tasks, 5 inner steps), set up as train.py sets up its runtime, printed as a hash. With
# grappler's default passes, three processes of this gave three different hashes (measured,
# AMD EPYC); smaller shapes (2 tasks, or 2 inner steps) agreed even so.
_GRADIENT_HASH = """
import hashlib
from metadrop_tf.cli import quiet
quiet.start(['-c'])  # as the programs start
import tensorflow as tf
import helpers
from metadrop_tf import config as config_lib, learners
from metadrop_tf.cli import main
from metadrop_tf.runtime import rewrites
config = config_lib.Config(dataset='omniglot', way=5, shot=1, query=5, metabatch=4, n_steps=5,
                           inner_lr=0.1, maml=True, intra_op_threads=1, inter_op_threads=1,
                           bitwise_reproducible=True).validate()
main._strategy(config, training=True)
episode = helpers.random_episode(4, 5, 1, 5, config.image_shape, dtype='float32')
learner = learners.build(config)
step = tf.function(lambda e, s: learner.meta_gradients(e, s, tf.constant(0, tf.int64)))
_, grads = step(episode, tf.constant([0, 0], tf.int32))
print(rewrites.rewrites_off(),
      hashlib.sha256(b''.join(g.numpy().tobytes() for g in grads)).hexdigest())
"""


@pytest.mark.slow
def test_two_processes_compute_bitwise_equal_meta_gradients():
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join([helpers.REPO, '.'])}
  runs = [subprocess.Popen([sys.executable, '-c', _GRADIENT_HASH], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env,
                           cwd=os.path.dirname(os.path.abspath(__file__))) for _ in range(2)]
  outputs = []
  for run in runs:
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-2000:]
    outputs.append(out.split())
  assert outputs[0][0] == 'True'  # the flag reached the runtime
  assert len(outputs[0][1]) == 64
  assert outputs[0] == outputs[1]
