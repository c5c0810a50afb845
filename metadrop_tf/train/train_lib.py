"""Meta-training's loop: restore or start a run, then iterate the traced step (train_step.py)
with the cadence of logs (reporting.py), evaluations and checkpoints, until done or asked to
stop."""

import math
import os
import signal
import sys
import tempfile
import threading

import tensorflow as tf

from metadrop_tf import config as config_lib
from metadrop_tf import errors
from metadrop_tf import learners
from metadrop_tf.episodes import data
from metadrop_tf.episodes import sampling
from metadrop_tf.evaluation import eval_lib
from metadrop_tf.runtime import checkpoints
from metadrop_tf.runtime import distribute
from metadrop_tf.train import reporting
from metadrop_tf.train import train_step


class DivergedError(errors.UserError):
  """The loss or the meta-gradient became NaN or inf; nothing of that step was saved."""
  exit_code = 3


def check_finite(outputs: dict, iteration: int, last_saved: int | None) -> None:
  """Raises DivergedError if the step's loss or meta-gradient norm is NaN or inf."""
  bad = [k for k in ('loss', 'grad_norm') if k in outputs and not math.isfinite(outputs[k])]
  if bad:
    raise DivergedError(
        f'{" and ".join(bad)} became {outputs[bad[0]]} at iteration {iteration}; stopped '
        f'without saving it (last checkpoint: {last_saved or "none"}). Lower `inner_lr` / '
        '`meta_lr` or `grad_clip`, or resume from the checkpoint with other settings in a new '
        '`savedir`')


class WriteError(errors.UserError):
  """A checkpoint could not be written (full disk, permissions); earlier ones are intact."""


def save(manager: tf.train.CheckpointManager, iteration: int) -> str:
  """Saves the checkpoint of `iteration`; a write failure is a WriteError naming the folder."""
  try:
    return manager.save(checkpoint_number=iteration)
  except (OSError, tf.errors.OpError) as e:
    raise WriteError(f'cannot write checkpoint {iteration} to {manager.directory} '
                     f'({errors.first_line(e, 160)}); '
                     f'the earlier checkpoints are intact: free space, then rerun to resume '
                     f'from {manager.latest_checkpoint}') from None


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


class _Run:
  """A run restored (or started) in its directory: what the loop iterates and writes.

  Writes <savedir>/config.json and flags.cfg once the data loaded and the checkpoint (if any)
  restored, so a run that cannot start leaves nothing behind; newer checkpoints that do not
  restore are moved to ckpt/unrestorable/ (never overwritten).
  """

  def __init__(self, config, savedir, progress, strategy):
    self.config, self.savedir, self.strategy = config, savedir, strategy
    distribute.check_divides(config.metabatch, 'metabatch', strategy)
    self.chief = chief = distribute.is_chief(strategy)
    self.splits = data.load_splits(config, ('train', config.eval_split))
    with strategy.scope():
      self.learner = learners.build(config)
      self.optimizer = train_step.make_optimizer(self.learner, config)
      self.ckpt = checkpoints.make_checkpoint(self.learner, self.optimizer)
    warnings = []
    restored, skipped = checkpoints.restore_newest(
        self.ckpt, savedir, required=False, warn=lambda fmt, *a: warnings.append(fmt % a))
    if config.normalize and not restored:  # a new run: the training split's statistics
      self.learner.network.set_input_statistics(
          *data.channel_statistics(config, self.splits['train']))
    if skipped and chief:
      warnings.append(f'moved the unrestorable checkpoints to '
                      f'{checkpoints.set_aside(savedir, skipped)}')
    self.writer = distribute.CheckpointWriter(strategy, savedir)
    if chief:
      checkpoints.write_config(savedir, config)
    self.manager = checkpoints.make_manager(self.ckpt, self.writer.directory,
                                            config.keep_checkpoints)
    self.iteration = int(self.ckpt.step.numpy())
    self.report = (reporting.Reporter(savedir, config, self.iteration, progress) if chief
                   else reporting.WorkerReport())
    for warning in warnings:
      self.report.log('warning: %s', warning)
    replicas = distribute.num_replicas(strategy)
    self.report.log('%s at iteration %d of %d in %s%s%s', 'resumed' if restored else 'started',
                    self.iteration, config.n_train_iters, savedir,
                    f' from {restored}' if restored else '',
                    f' on {replicas} replicas' if replicas > 1 else '')

  def checkpoint(self):
    """Saves the current iteration; returns its path."""
    path = save(self.manager, int(self.ckpt.step.numpy()))
    self.writer.cleanup()
    return path

  def preempted(self):
    self.report.log('preempted: saved iteration %d to %s on every worker; rerun the same '
                    'commands to resume', int(self.ckpt.step.numpy()),
                    os.path.join(self.savedir, checkpoints.CKPT_DIR))
    raise KeyboardInterrupt

  def iterate(self, stop, preemption):
    """Steps until n_train_iters or a stop request, logging, evaluating and saving when due."""
    config, learner, strategy = self.config, self.learner, self.strategy
    sampler = sampling.make_sampler(config, 'train', self.splits['train'])
    episodes = iter(sampling.make_dataset(sampler, config.metabatch, start=self.iteration,
                                      augment_seed=config.seed if config.augment else None))
    outer_step = train_step.make_outer_step(learner, self.optimizer, config, strategy)
    eval_step = eval_lib.make_eval_step(learner, config.eval_mc_samp, config.seed,
                                        strategy=strategy)
    due = lambda freq: self.iteration % freq == 0 or self.iteration == config.n_train_iters
    while self.iteration < config.n_train_iters and not stop.requested:
      episode = next(episodes)
      outputs = train_step.run_outer_step(outer_step, episode, self.iteration, config)
      check_finite(outputs, self.iteration, self.manager.latest_checkpoint)
      self.report.add(outputs)
      self.iteration += 1
      self.ckpt.step.assign(self.iteration)
      if due(config.log_freq) and self.chief:
        meta_lr = float(tf.convert_to_tensor(self.optimizer.learning_rate))
        noise = reporting.noise_summaries(learner.network, episode.query_x[0])
        self.report.train_window(self.iteration, {'meta_lr': meta_lr, **noise})
      if due(config.eval_freq):
        self.report.evaluation(self.iteration, config.eval_split, eval_lib.evaluate(
            learner, self.splits[config.eval_split], config, config.eval_split,
            config.eval_batches * config.metabatch, config.eval_mc_samp, progress=False,
            eval_step=eval_step, strategy=strategy))
      if due(config.save_freq):
        self.checkpoint()
      if preemption is not None and self.iteration < config.n_train_iters:
        preemption.save_checkpoint_if_preempted()


def train(config: config_lib.Config, savedir: str, progress: bool = True,
          strategy: tf.distribute.Strategy | None = None) -> int:
  """Trains (or resumes) the run in `savedir` to config.n_train_iters; returns its last iteration.

  Resumes from the newest checkpoint that restores (_Run). Checkpoints every save_freq
  iterations, at the end, and when interrupted (Ctrl-C, SIGTERM: after the running
  iteration), so rerunning the command resumes. A non-finite loss or meta-gradient raises
  DivergedError without saving that step.

  strategy: a tf.distribute strategy (default: the current one) whose replicas share every
  meta-batch. With several workers every worker runs this with the same arguments; only the
  chief writes the run directory, and a SIGTERM to any worker stops all of them after the
  same iteration with a checkpoint (TF's PreemptionCheckpointHandler).
  """
  run = _Run(config, savedir, progress, strategy or tf.distribute.get_strategy())
  try:
    with StopRequests() as stop, tempfile.TemporaryDirectory(prefix='metadrop_') as scratch:
      preemption = distribute.preemption_handler(run.strategy, run.checkpoint, run.preempted,
                                                 scratch)
      run.iterate(stop, preemption)
      if stop.requested and run.iteration < config.n_train_iters:
        run.checkpoint()
        run.report.log('interrupted: saved iteration %d to %s; rerun the command to resume',
                       run.iteration, os.path.join(savedir, checkpoints.CKPT_DIR))
        raise KeyboardInterrupt
  finally:
    run.report.close()
  return run.iteration
