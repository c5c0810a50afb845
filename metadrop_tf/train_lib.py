"""Meta-training: the traced outer step and the eager loop around it (logs, checkpoints, eval)."""

import math
import os
import signal
import sys
import tempfile
import threading
import time

from absl import logging
import keras
import tensorflow as tf
from tqdm import tqdm

from metadrop_tf import checkpoints
from metadrop_tf import data
from metadrop_tf import distribute
from metadrop_tf import errors
from metadrop_tf import eval_lib
from metadrop_tf import learners
from metadrop_tf import meta_learner
from metadrop_tf import metrics
from metadrop_tf import objectives

TRAIN_STREAM = 0  # noise seeds of training: fold_seed([seed, 0], iteration)


class DivergedError(errors.UserError):
  """The loss or the meta-gradient became NaN or inf; nothing of that step was saved."""
  exit_code = 3


def meta_lr_schedule(config):
  """--meta_lr under --lr_schedule: a float (constant) or a Keras schedule of the iteration."""
  schedules = keras.optimizers.schedules
  if config.lr_schedule == 'cosine':
    return schedules.CosineDecay(config.meta_lr, decay_steps=config.n_train_iters)
  if config.lr_schedule == 'step':
    return schedules.ExponentialDecay(config.meta_lr, config.lr_step_iters,
                                      config.lr_step_gamma, staircase=True)
  return config.meta_lr


def make_optimizer(learner, config):
  """The outer optimizer (Adam, or SGD with momentum) on the meta-variables, with its slots
  built now so the step traces once."""
  rate = meta_lr_schedule(config)
  if config.meta_optimizer == 'sgd':
    optimizer = keras.optimizers.SGD(learning_rate=rate, momentum=config.meta_momentum)
  else:
    optimizer = keras.optimizers.Adam(learning_rate=rate, epsilon=config.adam_epsilon)
  optimizer.build(learner.meta_variables())
  return optimizer


def make_meta_gradients(learner, config, strategy=None):
  """(episode meta-batch, iteration, with_pre) -> (dict of mean 'loss', 'acc', 'loss_pre',
  'acc_pre' (regression: 'mse', 'mse_pre'); the meta-gradient of meta_variables()), in
  cross-replica context (call it inside a tf.function).

  Under a tf.distribute `strategy` (default: the current one) every replica takes its share
  of the meta-batch's tasks (distribute.replica_share) and the shares' outputs and gradients
  are all-reduced (summed) in one collective: the result is the single-device mean over the
  meta-batch. The pre-adaptation query metrics are computed only where the bool tensor
  with_pre is true, NaN elsewhere.
  """
  strategy = strategy or tf.distribute.get_strategy()
  base_seed = tf.constant([config.seed, TRAIN_STREAM], tf.int32)

  def replica_step(episode, iteration, with_pre):
    total = episode.support_x.shape[0]
    share, first = distribute.replica_share(episode)
    pre = tf.cond(with_pre, lambda: learner.mean_pre_adaptation_outputs(share, total),
                  lambda: {'loss_pre': tf.constant(float('nan'), learner.dtype),
                           learner.objective.pre_key: tf.constant(float('nan'))})
    seed = meta_learner.fold_seed(base_seed, iteration)
    out, grads = learner.meta_gradients(share, seed, iteration, first_task=first,
                                        total_tasks=total)
    return distribute.all_reduce_sum(({**out, **pre}, grads))

  def meta_gradients(episode, iteration, with_pre):
    return distribute.local(strategy, strategy.run(replica_step, (episode, iteration, with_pre)))
  return meta_gradients


def make_outer_step(learner, optimizer, config, strategy=None):
  """tf.function (episode meta-batch, iteration, with_pre) -> dict of mean 'loss', 'acc',
  'loss_pre', 'acc_pre', and 'grad_norm' (global norm of the meta-gradient before clipping;
  NaN or inf if any element is).

  The meta-gradient of make_meta_gradients (e.g. adaptation of each task and the gradient of
  the mean query loss; all-reduced over the replicas of `strategy`), every element clipped to
  [-grad_clip, grad_clip] after the reduction, applied once by the optimizer. The
  pre-adaptation query metrics (a forward of every query set, ~15% of the step) are computed
  only where with_pre is true. Traced once per episode shape.
  """
  strategy = strategy or tf.distribute.get_strategy()
  variables = learner.meta_variables()
  meta_gradients = make_meta_gradients(learner, config, strategy)

  def replica_state(episode):
    part, _ = distribute.replica_share(episode)
    share = learner.training_state_share(part, episode.support_x.shape[0])
    return None if share is None else distribute.all_reduce_sum(share)

  @tf.function(autograph=False)  # Python control flow only: tracing skips the conversion
  def step(episode, iteration, with_pre):
    out, grads = meta_gradients(episode, iteration, with_pre)
    grad_norm = tf.linalg.global_norm(grads)
    grads = [tf.clip_by_value(g, -config.grad_clip, config.grad_clip) for g in grads]
    state = strategy.run(replica_state, (episode,))  # under the weights of this iteration
    optimizer.apply_gradients(zip(grads, variables))
    if state is not None:  # e.g. running batch-norm statistics (Learner.training_state_share)
      learner.update_training_state(distribute.local(strategy, state))
    return {**out, 'grad_norm': grad_norm}
  return step


def run_outer_step(outer_step, episode, iteration, config):
  """One training iteration; returns its metrics as floats, the pre-adaptation ones ('..._pre')
  only on every config.pre_adapt_freq-th iteration (the others do not compute them)."""
  with_pre = iteration % config.pre_adapt_freq == 0
  out = outer_step(episode, tf.constant(iteration, tf.int64), tf.constant(with_pre))
  return {k: float(v) for k, v in out.items() if with_pre or not k.endswith('_pre')}


def check_finite(outputs, iteration, last_saved):
  """Raises DivergedError if the step's loss or meta-gradient norm is NaN or inf."""
  bad = [k for k in ('loss', 'grad_norm') if k in outputs and not math.isfinite(outputs[k])]
  if bad:
    raise DivergedError(
        f'{" and ".join(bad)} became {outputs[bad[0]]} at iteration {iteration}; stopped '
        f'without saving it (last checkpoint: {last_saved or "none"}). Lower --inner_lr / '
        '--meta_lr or --grad_clip, or resume from the checkpoint with other settings in a new '
        '--savedir')


def noise_summaries(network, images):
  """Mean and std of each of the network's noise scales on `images` (none without noise)."""
  out = {}
  for name, scale in network.noise_scales(images).items():
    out[f'noise/{name}_mean'] = float(tf.reduce_mean(scale))
    out[f'noise/{name}_std'] = float(tf.math.reduce_std(scale))
  return out


class WriteError(errors.UserError):
  """A checkpoint could not be written (full disk, permissions); earlier ones are intact."""


def save(manager, step):
  """Saves checkpoint `step`; a write failure is a WriteError naming the folder."""
  try:
    return manager.save(checkpoint_number=step)
  except (OSError, tf.errors.OpError) as e:
    raise WriteError(f'cannot write checkpoint {step} to {manager.directory} '
                     f'({errors.first_line(e, 160)}); '
                     f'the earlier checkpoints are intact: free space, then rerun to resume '
                     f'from {manager.latest_checkpoint}') from None


class RunLog:
  """Writes each line to absl logging and appends it, time-stamped, to <workdir>/train.log."""

  def __init__(self, workdir):
    self._file = open(os.path.join(workdir, 'train.log'), 'a')

  def __call__(self, fmt, *args):
    line = fmt % args
    logging.info(line)
    self._file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
    self._file.flush()

  def close(self):
    self._file.close()


class Reporter:
  """Averages step outputs over a window and writes them to TensorBoard (tb/train, tb/eval),
  train.log and the progress bar."""

  def __init__(self, workdir, config, start, progress):
    self.log = RunLog(workdir)
    self.objective = objectives.for_config(config)
    self.writers = {k: tf.summary.create_file_writer(os.path.join(workdir, 'tb', k))
                    for k in ('train', 'eval')}
    self.window, self.tick = metrics.WindowAverage(), time.time()
    self.bar = tqdm(total=config.n_train_iters, initial=start, disable=not progress,
                    desc='train', dynamic_ncols=True)
    if not start:
      with self.writers['train'].as_default(step=0):
        tf.summary.text('config', '```\n' + config.to_json() + '\n```')

  def add(self, outputs):
    self.window.add(outputs)
    self.bar.update(1)

  def train_window(self, step, extra):
    """Writes the window's averages plus `extra` scalars and starts a new window."""
    count = len(self.window)
    values = self.window.result()
    values['iters_per_sec'] = count / max(time.time() - self.tick, 1e-9)
    values.update(extra)
    self.tick = time.time()
    self._scalars('train', values, step)
    key, pre_key = self.objective.key, self.objective.pre_key
    self.bar.set_postfix(loss=f"{values['loss']:.3f}", **{key: f'{values[key]:.3f}'})
    self.log(f'train | step %d | %.3f it/s | loss %.4f {key} %.4f | pre loss %.4f {key} %.4f',
             step, values['iters_per_sec'], values['loss'], values[key],
             values.get('loss_pre', float('nan')), values.get(pre_key, float('nan')))

  def evaluation(self, step, split, result):
    objective = self.objective
    value = result[objective.result]
    self._scalars('eval', {objective.key: value / objective.scale, 'loss': result['loss']},
                  step)
    self.log('eval %s | step %d | loss %.4f %s', split, step, result['loss'],
             objective.describe(value, result['ci95']).replace('accuracy', 'acc'))

  def _scalars(self, writer, values, step):
    with self.writers[writer].as_default(step=step):
      for key, value in values.items():
        tf.summary.scalar(key, value)
    self.writers[writer].flush()

  def close(self):
    self.bar.close()
    self.log.close()


class StopRequests:
  """Context in which the first Ctrl-C or SIGTERM only asks the training loop to stop.

  The loop checks `requested` between iterations, so the checkpoint it then saves holds weights
  and iteration counter of the same step (an interrupt landing between the optimizer update and
  the counter would not). A second signal stops at once, keeping the last periodic checkpoint.
  Signal handlers exist only in the main thread; elsewhere this does nothing.
  """

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.requested = False
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.requested:
      raise KeyboardInterrupt
    self.requested = True
    print(f'{signal.Signals(signum).name}: stopping after this iteration (again to stop now)',
          file=sys.stderr)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def __exit__(self, *exc_info):
    for s, handler in self._previous.items():
      signal.signal(s, handler)


class _WorkerReport:
  """The Reporter of a worker that is not the chief: writes nothing (the chief writes the run
  directory), logs its own warnings to absl only."""

  def add(self, outputs):
    del outputs

  def train_window(self, step, extra):
    del step, extra

  def evaluation(self, step, split, result):
    del step, split, result

  def log(self, fmt, *args):
    logging.info(fmt, *args)

  def close(self):
    pass


def train(config, workdir, progress=True, strategy=None):
  """Trains (or resumes) the run in `workdir` up to config.n_train_iters; returns final step.

  Writes <workdir>/config.json and flags.cfg once the data loaded and the checkpoint (if any)
  restored, so a run that cannot start leaves nothing behind. Resumes from the newest
  checkpoint that restores; newer ones that do not are moved to ckpt/unrestorable/ (never
  overwritten). Checkpoints every save_freq iterations, at the end, and when interrupted
  (Ctrl-C, SIGTERM: after the running iteration), so rerunning the command resumes. A
  non-finite loss or meta-gradient raises DivergedError without saving that step.

  strategy: a tf.distribute strategy (default: the current one) whose replicas share every
  meta-batch. With several workers every worker runs this with the same arguments; only the
  chief writes the run directory, and a SIGTERM to any worker stops all of them after the
  same iteration with a checkpoint (TF's PreemptionCheckpointHandler).
  """
  strategy = strategy or tf.distribute.get_strategy()
  distribute.check_divides(config.metabatch, 'metabatch', strategy)
  chief = distribute.is_chief(strategy)
  splits = data.load_splits(config, ('train', config.eval_split))
  with strategy.scope():
    learner = learners.build(config)
    optimizer = make_optimizer(learner, config)
    ckpt = checkpoints.make_checkpoint(learner, optimizer)
  warnings = []
  restored, skipped = checkpoints.restore_newest(
      ckpt, workdir, required=False, warn=lambda fmt, *a: warnings.append(fmt % a))
  if config.normalize and not restored:  # a new run: the training split's statistics
    learner.network.set_input_statistics(*data.channel_statistics(config, splits['train']))
  if skipped and chief:
    aside = checkpoints.set_aside(workdir, skipped)
    warnings.append(f'moved the unrestorable checkpoints to {aside}')
  writer = distribute.CheckpointWriter(strategy, workdir)
  if chief:
    checkpoints.write_config(workdir, config)
  manager = checkpoints.make_manager(ckpt, writer.directory, config.keep_checkpoints)
  step = int(ckpt.step.numpy())
  report = Reporter(workdir, config, step, progress) if chief else _WorkerReport()
  for warning in warnings:
    report.log('warning: %s', warning)
  replicas = distribute.num_replicas(strategy)
  report.log('%s at iteration %d of %d in %s%s%s', 'resumed' if restored else 'started', step,
             config.n_train_iters, workdir, f' from {restored}' if restored else '',
             f' on {replicas} replicas' if replicas > 1 else '')
  sampler = data.make_sampler(config, 'train', splits['train'])
  episodes = iter(data.make_dataset(sampler, config.metabatch, start=step,
                                    augment_seed=config.seed if config.augment else None))
  outer_step = make_outer_step(learner, optimizer, config, strategy)
  eval_step = eval_lib.make_eval_step(learner, config.eval_mc_samp, config.seed,
                                      strategy=strategy)
  due = lambda freq: step % freq == 0 or step == config.n_train_iters

  def checkpoint():
    path = save(manager, int(ckpt.step.numpy()))
    writer.cleanup()
    return path

  def preempted():
    report.log('preempted: saved iteration %d to %s on every worker; rerun the same commands '
               'to resume', int(ckpt.step.numpy()), os.path.join(workdir, checkpoints.CKPT_DIR))
    raise KeyboardInterrupt

  try:
    with StopRequests() as stop, tempfile.TemporaryDirectory(prefix='metadrop_') as scratch:
      preemption = distribute.preemption_handler(strategy, checkpoint, preempted, scratch)
      while step < config.n_train_iters and not stop.requested:
        episode = next(episodes)
        outputs = run_outer_step(outer_step, episode, step, config)
        check_finite(outputs, step, manager.latest_checkpoint)
        report.add(outputs)
        step += 1
        ckpt.step.assign(step)
        if due(config.log_freq) and chief:
          meta_lr = float(tf.convert_to_tensor(optimizer.learning_rate))
          report.train_window(step, {'meta_lr': meta_lr,
                                     **noise_summaries(learner.network, episode.query_x[0])})
        if due(config.eval_freq):
          report.evaluation(step, config.eval_split, eval_lib.evaluate(
              learner, splits[config.eval_split], config, config.eval_split,
              config.eval_batches * config.metabatch, config.eval_mc_samp, progress=False,
              eval_step=eval_step, strategy=strategy))
        if due(config.save_freq):
          checkpoint()
        if preemption is not None and step < config.n_train_iters:
          preemption.save_checkpoint_if_preempted()
      if stop.requested and step < config.n_train_iters:
        checkpoint()
        report.log('interrupted: saved iteration %d to %s; rerun the command to resume', step,
                   os.path.join(workdir, checkpoints.CKPT_DIR))
        raise KeyboardInterrupt
  finally:
    report.close()
  return step
