"""The learner interface: what training, evaluation, serving and visualization ask of a method.

A learner owns the variables it meta-learns (its network's, plus any of its own such as
learned inner learning rates, held in `own`, a Keras object that tf.train.Checkpoint tracks)
and answers:

  meta_variables()                       what the outer optimizer trains
  initial_state(way=None)                the fast state before adaptation (dict of tensors)
  adapt(support_x, support_y, seed, mc_samples, start=None, iteration=None)
                                         [state_0, ..., state_S]: adaptation on one support set
  predict(state, x)                      outputs [n, N] of inputs x [n, ...] from a state: logits
                                         (classification) or predictions (regression)
  objective                              the task's loss and metric (metadrop_tf.objectives)
  meta_gradients(episode, seed, iteration)
                                         (outputs, gradients of meta_variables()): the outer
                                         update's direction; default: the gradient of the mean
                                         query loss after adaptation (meta_objective)
  noisy                                  whether adaptation samples noise (then evaluation
                                         averages the support loss over MC samples)

A new method subclasses Learner (or GradientLearner for the MAML family), registers itself
with `@learners.register('name')`, and needs no change to the training loop, evaluation,
export or visualization.
"""

from typing import Callable
from typing import Optional

import tensorflow as tf

from metadrop_tf import objectives
from metadrop_tf import seeds as seeds_lib
from metadrop_tf.episodes import sampling


def stacked(per_task: list) -> dict:
  """A list of B dicts of scalars -> one dict of [B] tensors."""
  return {k: tf.stack([t[k] for t in per_task]) for k in per_task[0]}


class Learner:
  """Base class: the per-task and meta-batch plumbing shared by every method.

  Args:
    network: a network (metadrop_tf.nets.network): parameter groups, forward with explicit weights.
    n_steps: S, inner steps of adaptation.
    objective: what a task scores (default classification: cross-entropy, accuracy).
  Subclasses implement initial_state, adapt and predict (and may override meta_gradients).
  """

  noisy = False
  # Settings this learner reads beyond the core run settings, added to its base classes'
  # (metadrop_tf.components: any other learner option is an error for this learner): names of
  # settings, or a dict name -> config.Option(default, help) declaring new ones, which become
  # flags, --help lines and keys of config.json, read as config.<name>.
  OPTIONS: tuple = ()

  def __init__(self, network, n_steps: int,
               objective: objectives.Objective = objectives.CLASSIFICATION):
    self.network = network
    self.n_steps = n_steps
    self.objective = objective
    self.own = None  # a Keras object holding the learner's own variables, if any

  # --- what a method defines -------------------------------------------------------------
  def initial_state(self, way: Optional[int] = None) -> dict:
    """The fast state before adaptation, for tasks of `way` classes (None: the network's)."""
    raise NotImplementedError

  def adapt(self, support_x: tf.Tensor, support_y: tf.Tensor, seed: tf.Tensor, mc_samples: int = 1,
            start: Optional[dict] = None, iteration: tf.Tensor | None = None) -> list:
    """[state_0, ..., state_S] after 0..S steps on support_x [n, H, W, C], one-hot
    support_y [n, N]; seed int32 [2]; mc_samples noise samples per support loss; start: the
    state to begin from (default initial_state); iteration: the training iteration (int64
    tensor) for schedules, None outside training."""
    raise NotImplementedError

  def predict(self, state: dict, x: tf.Tensor) -> tf.Tensor:
    raise NotImplementedError

  # --- shared ----------------------------------------------------------------------------
  @property
  def dtype(self) -> str:
    return self.network.dtype

  def meta_variables(self) -> list:
    """The network's meta-trained variables, then the learner's own (optimizer slot order)."""
    own = list(self.own.trainable_variables) if self.own is not None else []
    return self.network.meta_variables() + own

  def variables(self) -> list:
    """Every variable a SavedModel of this learner must hold."""
    own = list(self.own.variables) if self.own is not None else []
    return list(self.network.variables) + own

  def training_state_share(self, episode: sampling.Episode, total_tasks: int) -> list | None:
    """State the learner keeps outside its meta-gradient and updates after every optimizer
    step (e.g. running batch-norm statistics): this replica's share of it for `episode`,
    summed over its tasks and divided by total_tasks (shares add up to the meta-batch mean),
    computed under the weights before the step. None (the default): no such state."""
    del episode, total_tasks
    return None

  def update_training_state(self, share: list | None) -> None:
    """Folds the all-reduced training_state_share into the learner's state."""
    del share

  def trackables(self) -> dict:
    """What tf.train.Checkpoint saves: the network as 'model' (the layout of every committed
    run), and the learner's own variables as 'learner' when it has any."""
    return {'model': self.network, **({'learner': self.own} if self.own is not None else {})}

  def task_outputs(self, support_x: tf.Tensor, support_y: tf.Tensor, query_x: tf.Tensor,
                   query_y: tf.Tensor, seed: tf.Tensor, mc_samples: int = 1,
                   iteration: tf.Tensor | None = None, extra: Callable | None = None) -> dict:
    """Adapts on the support, scores the deterministic forward on the query: scalars 'loss'
    (the meta-objective of the task) and the objective's metric (objective.key: 'acc').
    `iteration` (int64 scalar tensor or None) lets schedules depend on training progress;
    `extra(learner, state, query_x, query_y, seed)` adds metrics of the adapted state (e.g.
    accuracy under attack)."""
    state = self.adapt(support_x, support_y, seed, mc_samples, iteration=iteration)[-1]
    out = self.scores(self.predict(state, query_x), query_y)
    if extra is not None:
      out.update(extra(self, state, query_x, query_y, seed))
    return out

  def scores(self, outputs: tf.Tensor, targets: tf.Tensor) -> dict:
    """{'loss': objective.loss, objective.key: objective.metric} of outputs [n, N] against
    targets [n, N]."""
    return {'loss': self.objective.loss(outputs, targets),
            self.objective.key: self.objective.metric(outputs, targets)}

  def pre_adaptation_outputs(self, query_x: tf.Tensor, query_y: tf.Tensor) -> dict:
    """'loss_pre' and the metric's pre key ('acc_pre') of the initial state on the query
    (monitoring, no gradient)."""
    outputs = self.predict(self.initial_state(query_y.shape[-1]), query_x)
    return {'loss_pre': tf.stop_gradient(self.objective.loss(outputs, query_y)),
            self.objective.pre_key: self.objective.metric(outputs, query_y)}

  def per_task_outputs(self, episode: sampling.Episode, seeds: list, mc_samples: int = 1,
                       with_pre: bool = True, iteration: tf.Tensor | None = None,
                       extra: Callable | None = None) -> dict:
    """task_outputs (plus pre_adaptation_outputs if with_pre) of every task: dict of [B].

    episode: sampling.Episode with a static leading meta-batch axis B; seeds: B task seeds. Each
    task adapts and normalizes on its own. The tasks are a Python loop: on CPU this was
    faster than vectorized_map or grouped convolutions.
    """
    per_task = []
    for b in range(episode.support_x.shape[0]):
      outputs = self.task_outputs(episode.support_x[b], episode.support_y[b],
                                  episode.query_x[b], episode.query_y[b], seeds[b], mc_samples,
                                  iteration, extra)
      if with_pre:
        outputs.update(self.pre_adaptation_outputs(episode.query_x[b], episode.query_y[b]))
      per_task.append(outputs)
    return stacked(per_task)

  def meta_objective(self, episode: sampling.Episode, seed: tf.Tensor,
                     iteration: tf.Tensor | None = None, mc_samples: int = 1,
                     first_task: int | tf.Tensor = 0, total_tasks: int | None = None) -> dict:
    """Mean task_outputs over the meta-batch (task b seeded by fold_seed(seed, b); training
    uses one MC sample): scalars 'loss' (what meta_gradients differentiates) and the metric.

    A replica's share (runtime/distribute.py): `episode` holds tasks first_task (int or int64
    tensor) onward of a meta-batch of total_tasks; the outputs are then their sum divided by
    total_tasks, so the shares of the replicas add up to the meta-batch mean.
    """
    n = episode.support_x.shape[0]
    seeds = seeds_lib.task_seeds(seed, first_task, n)
    per_task = self.per_task_outputs(episode, seeds, mc_samples, with_pre=False,
                                     iteration=iteration)
    return share_of_mean(per_task, n if total_tasks is None else total_tasks)

  def meta_gradients(self, episode: sampling.Episode, seed: tf.Tensor,
                     iteration: tf.Tensor | None = None, first_task: int | tf.Tensor = 0,
                     total_tasks: int | None = None) -> tuple[dict, list]:
    """(meta_objective outputs, gradients of meta_variables()) of the tasks in `episode`, a
    share of a meta-batch as in meta_objective (summed over the shares: the meta-batch's).
    Override for another outer update (e.g. one that is not the gradient of a query loss),
    keeping that sum rule so it distributes."""
    variables = self.meta_variables()
    with tf.GradientTape() as tape:
      outputs = self.meta_objective(episode, seed, iteration, first_task=first_task,
                                    total_tasks=total_tasks)
    return outputs, tape.gradient(outputs['loss'], variables)

  def mean_pre_adaptation_outputs(self, episode: sampling.Episode,
                                  total_tasks: int | None = None) -> dict:
    """pre_adaptation_outputs averaged over the tasks of a meta-batch (or of a share of one,
    as meta_objective): dict of scalars."""
    per_task = [self.pre_adaptation_outputs(episode.query_x[b], episode.query_y[b])
                for b in range(episode.query_x.shape[0])]
    total = episode.query_x.shape[0] if total_tasks is None else total_tasks
    return share_of_mean(stacked(per_task), total)


def share_of_mean(per_task: dict, total_tasks: int) -> dict:
  """dict of [n] per-task values -> their sum / total_tasks (the mean when n == total_tasks,
  computed as tf.reduce_mean, which the committed runs used)."""
  out = {}
  for key, values in per_task.items():
    if values.shape[0] == total_tasks:
      out[key] = tf.reduce_mean(values)
    else:
      out[key] = tf.reduce_sum(values) / tf.cast(total_tasks, values.dtype)
  return out
