"""The traced outer step of meta-training: the meta-gradient of a meta-batch (all-reduced over
tf.distribute replicas), clipped, applied by the outer optimizer."""

from typing import Callable

import keras
import tensorflow as tf

from metadrop_tf import config as config_lib
from metadrop_tf import seeds as seeds_lib
from metadrop_tf.episodes import sampling
from metadrop_tf.learners import base as learner_base
from metadrop_tf.runtime import distribute


def meta_lr_schedule(
    config: config_lib.Config) -> float | keras.optimizers.schedules.LearningRateSchedule:
  """--meta_lr under --lr_schedule: a float (constant) or a Keras schedule of the iteration."""
  schedules = keras.optimizers.schedules
  if config.lr_schedule == 'cosine':
    return schedules.CosineDecay(config.meta_lr, decay_steps=config.n_train_iters)
  if config.lr_schedule == 'step':
    return schedules.ExponentialDecay(config.meta_lr, config.lr_step_iters,
                                      config.lr_step_gamma, staircase=True)
  return config.meta_lr


def make_optimizer(learner: learner_base.Learner,
                   config: config_lib.Config) -> keras.optimizers.Optimizer:
  """The outer optimizer (Adam, or SGD with momentum) on the meta-variables, with its slots
  built now so the step traces once."""
  rate = meta_lr_schedule(config)
  if config.meta_optimizer == 'sgd':
    optimizer = keras.optimizers.SGD(learning_rate=rate, momentum=config.meta_momentum)
  else:
    optimizer = keras.optimizers.Adam(learning_rate=rate, epsilon=config.adam_epsilon)
  optimizer.build(learner.meta_variables())
  return optimizer


def make_meta_gradients(learner: learner_base.Learner, config: config_lib.Config,
                        strategy: tf.distribute.Strategy | None = None) -> Callable:
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
  base_seed = tf.constant([config.seed, seeds_lib.TRAIN], tf.int32)

  def replica_step(episode, iteration, with_pre):
    total = episode.support_x.shape[0]
    share, first = distribute.replica_share(episode)
    pre = tf.cond(with_pre, lambda: learner.mean_pre_adaptation_outputs(share, total),
                  lambda: {'loss_pre': tf.constant(float('nan'), learner.dtype),
                           learner.objective.pre_key: tf.constant(float('nan'))})
    seed = seeds_lib.fold_seed(base_seed, iteration)
    out, grads = learner.meta_gradients(share, seed, iteration, first_task=first,
                                        total_tasks=total)
    return distribute.all_reduce_sum(({**out, **pre}, grads))

  def meta_gradients(episode, iteration, with_pre):
    return distribute.local(strategy, strategy.run(replica_step, (episode, iteration, with_pre)))
  return meta_gradients


def make_outer_step(learner: learner_base.Learner, optimizer: keras.optimizers.Optimizer,
                    config: config_lib.Config,
                    strategy: tf.distribute.Strategy | None = None) -> Callable:
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


def run_outer_step(outer_step: Callable, episode: sampling.Episode, iteration: int,
                   config: config_lib.Config) -> dict:
  """One training iteration; returns its metrics as floats, the pre-adaptation ones ('..._pre')
  only on every config.pre_adapt_freq-th iteration (the others do not compute them)."""
  with_pre = iteration % config.pre_adapt_freq == 0
  out = outer_step(episode, tf.constant(iteration, tf.int64), tf.constant(with_pre))
  return {k: float(v) for k, v in out.items() if with_pre or not k.endswith('_pre')}
