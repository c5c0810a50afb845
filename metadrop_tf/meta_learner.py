"""Inner loop (adaptation of theta) and the per-task and meta-batch losses: pure functions.

MAML and Meta Dropout run the same code; the model decides whether sampling adds noise.
"""

from typing import NamedTuple

import tensorflow as tf


class Adaptation(NamedTuple):
  """How the inner loop adapts theta (SPEC "Inner loop")."""
  n_steps: int  # S, SGD steps
  inner_lr: float
  mc_samples: int = 1  # M, Monte-Carlo samples of the sampled support loss
  first_order: bool = False  # stop gradients through the inner gradients

  @classmethod
  def from_config(cls, config, mc_samples=1):
    return cls(config.n_steps, config.inner_lr, mc_samples, config.first_order)


def cross_entropy(logits, labels):
  """Mean softmax cross-entropy; logits [n, N], one-hot labels [n, N]."""
  labels = tf.cast(labels, logits.dtype)
  return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def accuracy(logits, labels):
  """Fraction of rows whose argmax matches the one-hot label: float32 scalar."""
  hits = tf.equal(tf.argmax(logits, axis=-1), tf.argmax(labels, axis=-1))
  return tf.reduce_mean(tf.cast(hits, tf.float32))


def fold_seed(seed, *indices):
  """A new stateless seed (int32 [2]) for sub-stream `indices` of `seed`."""
  for index in indices:
    seed = tf.random.experimental.stateless_fold_in(seed, index)
  return seed


def inner_step(model, theta, phi, x, y, seed, adaptation):
  """One SGD step on theta for the mean sampled loss over M noise samples of the support.

  x: [n, H, W, C], y: [M * n, N] (the labels tiled M times). phi: the model's phi as tensors.
  Returns the new theta dict. The gradient stays differentiable (second order) unless
  adaptation.first_order.
  """
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch(theta)
    logits = model(x, theta=theta, sample=True, seed=seed, copies=adaptation.mc_samples,
                   phi=phi)
    loss = cross_entropy(logits, y)
  grads = tape.gradient(loss, theta)
  if adaptation.first_order:
    grads = {k: tf.stop_gradient(g) for k, g in grads.items()}
  return {k: theta[k] - adaptation.inner_lr * grads[k] for k in theta}


def inner_loop(model, support_x, support_y, seed, adaptation, theta=None):
  """Adapts theta on one support set: returns [theta_0, ..., theta_S], dicts of tensors.

  support_x: [N*K, H, W, C], support_y: [N*K, N], seed: int32 [2].
  theta: the start (default the model's variables; e.g. a head cut to fewer columns).
  phi is read once, so the steps share what depends only on phi and the support.
  """
  y = tf.tile(support_y, [adaptation.mc_samples, 1])
  phi = model.read_phi()
  thetas = [model.initial_theta() if theta is None else theta]
  for step in range(adaptation.n_steps):
    thetas.append(inner_step(model, thetas[-1], phi, support_x, y, fold_seed(seed, step),
                             adaptation))
  return thetas


def task_outputs(model, support_x, support_y, query_x, query_y, seed, adaptation):
  """Adapts on the support, scores the deterministic forward on the query.

  Returns a dict of scalars 'loss' and 'acc' after adaptation (loss is the meta-objective).
  """
  theta = inner_loop(model, support_x, support_y, seed, adaptation)[-1]
  logits = model(query_x, theta=theta)
  return {'loss': cross_entropy(logits, query_y), 'acc': accuracy(logits, query_y)}


def pre_adaptation_outputs(model, query_x, query_y):
  """'loss_pre' and 'acc_pre' of the initial theta on the query (monitoring, no gradient)."""
  logits = model(query_x)
  return {'loss_pre': tf.stop_gradient(cross_entropy(logits, query_y)),
          'acc_pre': accuracy(logits, query_y)}


def task_seeds(seed, first_task, n_tasks):
  """Seeds (int32 [2] each) of tasks first_task .. first_task + n_tasks - 1 of stream `seed`."""
  return [fold_seed(seed, first_task + b) for b in range(n_tasks)]


def per_task_outputs(model, episode, seeds, adaptation, with_pre=True):
  """task_outputs (plus pre_adaptation_outputs if with_pre) of every task: dict of [B] tensors.

  episode: data.Episode with a leading meta-batch axis B (static); seeds: B task seeds.
  Each task adapts and normalizes on its own (batch norm never mixes tasks). The tasks are a
  Python loop: on CPU this was faster than vectorized_map or grouped convolutions.
  """
  per_task = []
  for b in range(episode.support_x.shape[0]):
    outputs = task_outputs(model, episode.support_x[b], episode.support_y[b],
                           episode.query_x[b], episode.query_y[b], seeds[b], adaptation)
    if with_pre:
      outputs.update(pre_adaptation_outputs(model, episode.query_x[b], episode.query_y[b]))
    per_task.append(outputs)
  return _stacked(per_task)


def _stacked(per_task):
  """A list of B dicts of scalars -> one dict of [B] tensors."""
  return {k: tf.stack([t[k] for t in per_task]) for k in per_task[0]}


def meta_batch_outputs(model, episode, seed, adaptation):
  """task_outputs averaged over the meta-batch (task b seeded by fold_seed(seed, b)).

  Returns a dict of scalars 'loss' (the meta-objective) and 'acc'.
  """
  seeds = task_seeds(seed, 0, episode.support_x.shape[0])
  return {k: tf.reduce_mean(v) for k, v in
          per_task_outputs(model, episode, seeds, adaptation, with_pre=False).items()}


def mean_pre_adaptation_outputs(model, episode):
  """pre_adaptation_outputs averaged over the tasks of a meta-batch: dict of scalars."""
  per_task = [pre_adaptation_outputs(model, episode.query_x[b], episode.query_y[b])
              for b in range(episode.query_x.shape[0])]
  return {k: tf.reduce_mean(v) for k, v in _stacked(per_task).items()}
