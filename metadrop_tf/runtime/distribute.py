"""Many devices and hosts with tf.distribute: the strategy of a run and the meta-batch's split.

Every replica runs whole tasks. Task b of a meta-batch of B tasks is the same on whichever
replica runs it (its episode and its noise are functions of the seed, the iteration and b), so
replica r of R adapts tasks r * B / R .. (r + 1) * B / R - 1 and returns the sum of their
objectives and gradients divided by B; the sum over replicas is the single-device mean. The
training step all-reduces that sum explicitly (one packed collective), clips the reduced
gradient elementwise (the reference's clip is of the whole meta-batch's gradient, not of a
replica's share) and applies it once in cross-replica context (Keras 3 optimizers would sum
again inside apply_gradients in a replica context). Evaluation splits its episodes the same
way and gathers the per-episode results in episode order.

Strategies (--strategy):
  one_device    TF's default strategy: today's single-process code path, unchanged numbers
  mirrored      tf.distribute.MirroredStrategy over this host's GPUs, or over --cpu_devices
                logical CPU devices
  multi_worker  tf.distribute.MultiWorkerMirroredStrategy, one process per worker, the cluster
                in TF_CONFIG; RING collectives (the ones that run on CPU)
  auto          multi_worker when TF_CONFIG names a cluster, else mirrored when this host has
                several GPUs or --cpu_devices > 1, else one_device
"""

import json
import os
import shutil
import socket
import tempfile
from typing import Any
from typing import Callable

import tensorflow as tf

from metadrop_tf import config as config_lib
from metadrop_tf.episodes import sampling


def configure_devices(config: config_lib.Config) -> None:
  """Splits the CPU into config.cpu_devices logical devices (> 1). Call before any TF op: the
  runtime fixes its devices then (a ConfigError says so if it is too late)."""
  if config.cpu_devices <= 1:
    return
  cpu = tf.config.list_physical_devices('CPU')[0]
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * config.cpu_devices)
  except RuntimeError:
    if len(tf.config.list_logical_devices('CPU')) != config.cpu_devices:
      raise config_lib.ConfigError(
          f'`cpu_devices={config.cpu_devices}`: the TF runtime of this process already '
          'started with other devices; set it in a fresh process') from None


def cluster_from_env() -> dict:
  """The cluster TF_CONFIG names ({} without one); ConfigError for TF_CONFIG that is not
  the JSON tf.distribute expects."""
  text = os.environ.get('TF_CONFIG', '')
  if not text.strip():
    return {}
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    raise config_lib.ConfigError(f'TF_CONFIG is not valid JSON ({e}); it must look like '
                                 '{"cluster": {"worker": ["host:port", ...]}, "task": '
                                 '{"type": "worker", "index": 0}}') from None
  cluster = value.get('cluster', {}) if isinstance(value, dict) else None
  task = value.get('task', {}) if isinstance(value, dict) else None
  if not isinstance(cluster, dict) or not isinstance(task, dict):
    raise config_lib.ConfigError('TF_CONFIG must be a JSON object with "cluster" and "task"')
  if cluster and ('type' not in task or 'index' not in task):
    raise config_lib.ConfigError('TF_CONFIG names a cluster but no "task": {"type": "worker", '
                                 '"index": i} for this process')
  return cluster


def strategy_name(config: config_lib.Config) -> str:
  """The strategy --strategy names, with auto resolved for this process and host."""
  if config.strategy != 'auto':
    return config.strategy
  cluster = cluster_from_env()
  if sum(len(tasks) for tasks in cluster.values()) > 1:
    return 'multi_worker'
  if len(tf.config.list_physical_devices('GPU')) > 1 or config.cpu_devices > 1:
    return 'mirrored'
  return 'one_device'


def make_strategy(config: config_lib.Config) -> tf.distribute.Strategy:
  """The tf.distribute strategy of --strategy (configure_devices first). Create it before
  any other TF op: multi_worker configures the collectives then."""
  name = strategy_name(config)
  if name == 'one_device':
    return tf.distribute.get_strategy()
  if name == 'mirrored':
    gpus = tf.config.list_logical_devices('GPU')
    devices = [d.name for d in gpus or tf.config.list_logical_devices('CPU')]
    return tf.distribute.MirroredStrategy(devices)
  if not cluster_from_env():
    raise config_lib.ConfigError('`strategy=multi_worker` needs TF_CONFIG naming the cluster '
                                 'and this worker (docs/scaling.md)')
  options = tf.distribute.experimental.CommunicationOptions(
      implementation=tf.distribute.experimental.CommunicationImplementation.RING)
  return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def num_replicas(strategy: tf.distribute.Strategy) -> int:
  return strategy.num_replicas_in_sync


def check_divides(tasks: int, name: str, strategy: tf.distribute.Strategy) -> None:
  """ConfigError unless `tasks` (the value of setting `name`) splits evenly among the replicas."""
  replicas = num_replicas(strategy)
  if tasks % replicas:
    raise config_lib.ConfigError(
        f'`{name}={tasks}` does not split among the {replicas} replicas of this strategy; '
        f'use a multiple of {replicas}')


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run directory (logs, TensorBoard, config, checkpoints):
  every single-process strategy, and the chief (or worker 0 without one) of a cluster."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.cluster_spec().jobs:
    return True
  if resolver.task_type == 'chief':
    return True
  jobs = resolver.cluster_spec().jobs
  return resolver.task_type == 'worker' and resolver.task_id == 0 and 'chief' not in jobs


def replica_share(episode: sampling.Episode) -> tuple[sampling.Episode, tf.Tensor | int]:
  """(this replica's tasks of a meta-batch episode, index of the first of them).

  Call in a replica context. The index is an int32 tensor (0, a Python int, with one
  replica): seeds folded with it equal those folded with Python ints (an int64 index folds
  to other seeds).
  """
  context = tf.distribute.get_replica_context()
  replicas = context.num_replicas_in_sync
  if replicas == 1:
    return episode, 0
  size = episode.support_x.shape[0] // replicas
  first = tf.cast(context.replica_id_in_sync_group, tf.int32) * size
  rows = first + tf.range(size)
  return tf.nest.map_structure(lambda t: tf.gather(t, rows), episode), first


def all_reduce_sum(values: Any) -> Any:
  """Sum over the replicas of a structure of tensors, in a replica context (identity with
  one replica); one packed collective per dtype (e.g. float64 gradients, float32 accuracy)."""
  context = tf.distribute.get_replica_context()
  if context.num_replicas_in_sync == 1:
    return values
  flat = tf.nest.flatten(values)
  by_dtype = {}
  for i, value in enumerate(flat):
    by_dtype.setdefault(value.dtype, []).append(i)
  reduced = list(flat)
  for indices in by_dtype.values():
    sums = context.all_reduce(tf.distribute.ReduceOp.SUM, [flat[i] for i in indices])
    for i, value in zip(indices, sums):
      reduced[i] = value
  return tf.nest.pack_sequence_as(values, reduced)


def local(strategy: tf.distribute.Strategy, values: Any) -> Any:
  """A structure of per-replica values that are equal on every replica (all-reduced) as the
  first local replica's, for cross-replica code."""
  return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], values)


class CheckpointWriter:
  """Where this process writes checkpoints: the run's ckpt/ on the chief; a temporary folder,
  removed after every save, on other workers (they must save too: tf.distribute's rule for
  multi-worker checkpoints)."""

  def __init__(self, strategy, directory):
    self.chief = is_chief(strategy)
    self.directory = directory if self.chief else tempfile.mkdtemp(prefix='metadrop_worker_')

  def cleanup(self) -> None:
    if not self.chief:
      shutil.rmtree(self.directory, ignore_errors=True)


PreemptionHandler = tf.distribute.experimental.PreemptionCheckpointHandler


def preemption_handler(strategy: tf.distribute.Strategy, save_fn: Callable, exit_fn: Callable,
                       scratch_dir: str) -> PreemptionHandler | None:
  """TF's PreemptionCheckpointHandler for a multi-worker strategy (None otherwise).

  On SIGTERM to any worker, the workers agree (through the coordination service) on the
  step after which all of them call save_fn() and then exit_fn(); the loop calls its
  save_checkpoint_if_preempted() after every step (training: every iteration; evaluation:
  every call, with nothing more to save than its partial results). Our checkpoints keep their own
  names and counter: the handler's own checkpoint is an empty one in a scratch folder, read
  at start (so its run counter starts at 0 on every worker) and never written, under
  scratch_dir (an empty folder of this process).
  """
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.cluster_spec().jobs:
    return None
  termination = tf.distribute.experimental.TerminationConfig(exit_fn=exit_fn, save_fn=save_fn)
  return tf.distribute.experimental.PreemptionCheckpointHandler(
      resolver, tf.train.Checkpoint(), os.path.join(scratch_dir, 'preemption'), termination)


def loopback_tf_configs(workers: int) -> list:
  """TF_CONFIG values (JSON text) of a cluster of `workers` processes on this host, one per
  worker, on localhost ports free now (tests and bench/step.py start such clusters)."""
  sockets = [socket.socket() for _ in range(workers)]
  for s in sockets:
    s.bind(('localhost', 0))
  cluster = {'worker': [f'localhost:{s.getsockname()[1]}' for s in sockets]}
  for s in sockets:
    s.close()
  return [json.dumps({'cluster': cluster, 'task': {'type': 'worker', 'index': i}})
          for i in range(workers)]
