"""One float64 meta-gradient and one SGD update of tiny Meta Dropout and MAML learners (MAML
with the running batch-norm statistics of --bn_mode=running) under a tf.distribute strategy, for
tests/test_distribute.py.

In the test process, compute(tf.distribute.get_strategy()) is the single-device reference. As
a program (a fresh process, so the devices can still be chosen):
  python tests/distributed_step.py mirrored OUT.npz       2 logical CPU devices, 2 replicas
  TF_CONFIG=... python tests/distributed_step.py multi_worker OUT.npz
writes the results of the strategy to OUT.npz (the chief only).
"""

import sys

import numpy as np

from metadrop_tf.cli import lean_import

with lean_import.refusing():  # as the programs start (in pytest, TensorFlow is imported already)
  import tensorflow as tf

METABATCH = 2  # one task per replica of 2
ITERATION = 3
GRAD_CLIP = 2e-4  # small enough that the clip changes some elements of these gradients
LEARNERS = ('metadrop', 'maml_running')  # maml_running: MAML with --bn_mode=running


def compute(strategy) -> dict:
  """name -> array: 'maml/grad/i', 'maml/after/i' (meta-variable i after one update),
  'maml/loss', ... for each of LEARNERS."""
  import helpers  # pylint: disable=g-import-not-at-top
  from metadrop_tf import learners  # pylint: disable=g-import-not-at-top
  from metadrop_tf.train import train_step  # pylint: disable=g-import-not-at-top
  config = helpers.tiny_config(metabatch=METABATCH, meta_optimizer='sgd', meta_momentum=0.0,
                               meta_lr=0.5, grad_clip=GRAD_CLIP)
  episode = helpers.random_episode(metabatch=METABATCH)
  iteration, with_pre = tf.constant(ITERATION, tf.int64), tf.constant(True)
  out = {}
  for name in LEARNERS:
    with strategy.scope():
      if name == 'maml_running':
        network = helpers.tiny_model(noisy=False)
        network.track_running_statistics()
        learner = learners.REGISTRY['maml'](network, 1, 0.2, bn_mode='running')
      else:
        learner = helpers.tiny_learner(name, n_steps=1)
      optimizer = train_step.make_optimizer(learner, config)
    # The meta-gradient eagerly (tracing it apart from the step would double the test's
    # time); the step below, traced as in training, gives the update.
    meta_gradients = train_step.make_meta_gradients(learner, config, strategy)
    outputs, grads = meta_gradients(episode, iteration, with_pre)
    step = train_step.make_outer_step(learner, optimizer, config, strategy)
    step(episode, iteration, with_pre)
    for key, value in outputs.items():
      out[f'{name}/{key}'] = value.numpy()
    for i, (grad, variable) in enumerate(zip(grads, learner.meta_variables())):
      out[f'{name}/grad/{i}'] = grad.numpy()
      out[f'{name}/after/{i}'] = tf.convert_to_tensor(variable).numpy()
    if learner.running:  # the running statistics the step averaged in
      for i, (mean, var) in enumerate(learner.network.running_statistics()):
        out[f'{name}/running_mean/{i}'], out[f'{name}/running_var/{i}'] = mean.numpy(), var.numpy()
  return out


def main(mode, path):
  from metadrop_tf.runtime import distribute  # pylint: disable=g-import-not-at-top
  if mode == 'mirrored':
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  else:
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
  results = compute(strategy)
  results['replicas'] = np.array(strategy.num_replicas_in_sync)
  if distribute.is_chief(strategy):
    np.savez(path, **results)


if __name__ == '__main__':
  main(*sys.argv[1:])
