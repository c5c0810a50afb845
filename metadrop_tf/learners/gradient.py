"""The MAML family's inner loop, written once: SGD on the network's adapted parameters (theta).

Every gradient-based learner is a GradientLearner with other options or rates; each idea that
varies lives in a module of its own:
  which parameters adapt     `adapted` (ANIL: the head; --adapt_params)
  inner learning rates       inner_rates(): constant (MAML), per element (Meta-SGD, metasgd.py),
                             per parameter and step (MAML++ LSLR, --lslr; inner_rates.py)
  inner SGD                  momentum and weight decay (PyTorch-MAML's options)
  order, meta-objective      first order, derivative-order annealing, multi-step loss (schedules.py)
  head                       meta-learned, or zero at the start of every task (--zero_head)
  support mixup              mixup.py (--inner_mixup)
  noise                      Meta Dropout's phi, sampled by a noisy network (--meta_dropout)
  batch norm                 batch_norm.py (--bn_mode)
  memory                     checkpointing.py (--gradient_checkpointing), MC chunks
"""

from typing import Callable
from typing import Sequence

import tensorflow as tf

from metadrop_tf import config as config_lib
from metadrop_tf import objectives
from metadrop_tf import seeds as seeds_lib
from metadrop_tf.episodes import sampling
from metadrop_tf.learners import base
from metadrop_tf.learners import batch_norm
from metadrop_tf.learners import checkpointing
from metadrop_tf.learners import inner_rates
from metadrop_tf.learners import inner_sgd
from metadrop_tf.learners import mc_chunks
from metadrop_tf.learners import mixup as mixup_lib
from metadrop_tf.learners import schedules
from metadrop_tf.nets import layers
from metadrop_tf.nets import network as network_lib


class GradientLearner(base.Learner):
  """Adapts theta by S steps of SGD on the (noisy, MC-averaged) support loss.

  Args:
    network: the network; built noisy, adaptation samples Meta Dropout's noise.
    n_steps: S.
    inner_lr: SGD step size (the start of learned rates).
    first_order: stop gradients through the inner gradients.
    adapted: the theta parameters the inner loop adapts (None: all); the rest stay meta-learned.
    momentum, weight_decay: of the inner SGD, as torch.optim.SGD: d = g + wd * p,
      v = momentum * v + d (v = d at the first step), p -= lr * v.
    zero_head: the head starts every task at zero ([F, N] of the task's N, so another way can
      be evaluated) and is not meta-learned.
    lslr: learned per-parameter, per-step inner rates (MAML++).
    msl_iters, first_order_iters: MAML++'s schedules (schedules.py): the multi-step loss for
      iterations < msl_iters; first order for iterations < first_order_iters.
    checkpointing: recompute each inner step's activations in the outer backward
      (checkpointing.py; not with momentum); kept_steps: the last this many steps keep theirs.
    bn_mode: one of batch_norm.MODES.
    objective: the task's loss (inner and outer) and metric (metadrop_tf.objectives).
    mixup: '', 'input' or 'manifold' (mixup.py; no noise); lam ~ Beta(mixup_alpha, mixup_alpha).
    noise_penalty: weight of network.noise_penalty (information dropout's KL) in the inner loss.
    mc_chunks: an inner step takes its M > 1 noise samples in this many chunks (about M /
      mc_chunks each), each with its own draws, gradients averaged by size (1: one pass).
  """

  # The settings this family reads beyond the core run settings (metadrop_tf.components).
  OPTIONS = ('adapt_params', 'first_order', 'inner_momentum', 'inner_weight_decay', 'zero_head',
             'lslr', 'msl_iters', 'first_order_iters', 'gradient_checkpointing', 'bn_mode',
             'inner_mixup', 'meta_dropout', 'noise_type')

  def __init__(self, network, n_steps: int, inner_lr: float, first_order: bool = False,
               adapted: Sequence[str] | None = None, momentum: float = 0.0,
               weight_decay: float = 0.0, zero_head: bool = False, lslr: bool = False,
               msl_iters: int = 0, first_order_iters: int = 0, checkpointing: bool = False,
               bn_mode: str = 'transductive',
               objective: objectives.Objective = objectives.CLASSIFICATION,
               mixup: str = '', mixup_alpha: float = 2.0, noise_penalty: float = 0.0,
               mc_chunks: int = 1, kept_steps: int = 0):
    super().__init__(network, n_steps, objective)
    if mixup not in mixup_lib.KINDS:
      raise ValueError(f'`inner_mixup={mixup}` must be one of {list(mixup_lib.KINDS)}')
    if mixup and network.noisy:
      raise ValueError('`inner_mixup` is a baseline for learners without noise; drop '
                       '`meta_dropout` or use `learner=maml`')
    self.mixup, self.mixup_alpha = mixup, float(mixup_alpha)
    self.noise_penalty = float(noise_penalty)
    self.inner_lr = float(inner_lr)
    self.first_order = first_order
    names = list(network.theta)
    unknown = sorted(set(adapted or ()) - set(names))
    if unknown:
      raise ValueError(f'unknown parameters {unknown}; the network has {names}')
    self.adapted = [n for n in names if adapted is None or n in adapted]
    self.momentum, self.weight_decay = float(momentum), float(weight_decay)
    self.zero_head = zero_head
    if zero_head and not set(network.head_names) <= set(self.adapted):
      raise ValueError('`zero_head` needs the head adapted (it starts every task at zero); '
                       f'`adapt_params` selects {self.adapted}')
    self.msl_iters, self.first_order_iters = msl_iters, first_order_iters
    if checkpointing and momentum:
      raise ValueError('`gradient_checkpointing` does not carry `inner_momentum` buffers '
                       'across steps; use one of them')
    self.checkpointing = checkpointing
    self.kept_steps = kept_steps
    self.mc_chunks = mc_chunks
    self._pinned = None  # variable_values inside a looped step (checkpointing.looped_steps)
    self.rates = None
    if lslr:
      self.rates = inner_rates.StepRates({name: (n_steps,) for name in self.adapted}, inner_lr,
                                         dtype=network.dtype, prefix='lslr')
    self.bn = batch_norm.BatchNormMode(network, n_steps, bn_mode)
    self.running, self.offsets = self.bn.running, self.bn.offsets
    self.own = inner_rates.own_variables(self.rates, self.offsets)

  @classmethod
  def from_config(cls, network: network_lib.Network, config: config_lib.Config,
                  **kwargs: object) -> 'GradientLearner':
    """The learner a Config describes (its inner-loop and MAML++ options)."""
    options = dict(first_order=config.first_order,
                   adapted=network.select(config.adapt_params), momentum=config.inner_momentum,
                   weight_decay=config.inner_weight_decay, zero_head=config.zero_head,
                   lslr=config.lslr, msl_iters=config.msl_iters,
                   first_order_iters=config.first_order_iters,
                   checkpointing=config.gradient_checkpointing,
                   kept_steps=config.checkpoint_kept_steps, bn_mode=config.bn_mode,
                   objective=objectives.for_config(config), mixup=config.inner_mixup,
                   mixup_alpha=config.mixup_alpha,
                   noise_penalty=(config.noise_penalty
                                  if config.noise_type in ('info_dropout', 'vib') else 0.0),
                   mc_chunks=config.test_mc_chunks)
    options.update(kwargs)
    return cls(network, config.n_steps, config.inner_lr, **options)

  @property
  def noisy(self) -> bool:
    return self.network.noisy

  def meta_variables(self) -> list:
    """As Learner's, less the head's variables with zero_head (never used then) and the
    offsets a batch-norm mode replaces."""
    unused = {id(v) for name, v in self.network.theta.items()
              if self.zero_head and name in self.network.head_names}
    unused |= self.bn.unused_variables()
    return [v for v in super().meta_variables() if id(v) not in unused]

  def initial_state(self, way: int | None = None) -> dict:
    """The meta-learned theta; with zero_head, its head zero with `way` columns."""
    state = self.network.initial_theta()
    if self.zero_head:
      for name in self.network.head_names:
        shape = state[name].shape.as_list()
        state[name] = tf.zeros(shape[:-1] + [way or shape[-1]], self.dtype)
    return state

  def predict(self, state: dict, x: tf.Tensor) -> tf.Tensor:
    """Logits [n, N] of x [n, H, W, C]; normalized with the state's support statistics when it
    has them (inductive), else with x's own (transductive)."""
    return self.network(x, theta=state, statistics=state.get(batch_norm.STATISTICS),
                        beta=state.get(batch_norm.OFFSETS))

  def training_state_share(self, episode: sampling.Episode, total_tasks: int) -> list | None:
    return self.bn.training_state_share(episode, total_tasks)

  def update_training_state(self, share: list | None) -> None:
    self.bn.update_training_state(share)

  def with_offsets(self, state: dict, step: int | tf.Tensor) -> dict:
    """state with the batch-norm offsets of inner step `step` (per_step; else state)."""
    if self.offsets is None:
      return state
    return {**state, batch_norm.OFFSETS: {
        name: values[step] for name, values in self.variable_values('offsets').items()}}

  def inner_rates(self, state: dict, step: int) -> dict:
    """Step size of each adapted parameter at inner step `step`: a scalar or a tensor that
    broadcasts to the parameter."""
    del state
    if self.rates is not None:
      return {name: rates[step] for name, rates in self.variable_values('rates').items()}
    rate = tf.constant(self.inner_lr, self.dtype)
    return {name: rate for name in self.adapted}

  def variable_values(self, group: str) -> dict:
    """name -> tensor of the learner's variables an inner step reads besides state and phi:
    group 'rates' (learned inner rates), 'offsets' (per-step batch-norm offsets) or 'beta'
    (the network's offsets); read from the variables, or inside checkpointing.looped_steps
    the values read once before the loop (a while loop's gradient cannot re-read variables in
    a recomputation; pin)."""
    if self._pinned is not None:
      return self._pinned[group]
    if group == 'beta':
      return {name: tf.convert_to_tensor(v) for name, v in self.network.beta.items()}
    return getattr(self, group).rates()

  def pin(self, values: dict | None) -> None:
    """variable_values answers `values` ({group: {name: tensor}}) until pin(None)."""
    self._pinned = values

  def inner_step(self, state: dict, velocity: dict, phi: dict, x: tf.Tensor, y: tf.Tensor,
                 seed: tf.Tensor, mc_samples: int, step: int | tf.Tensor,
                 first_order: bool | tf.Tensor) -> tuple[dict, dict]:
    """One SGD step on the mean sampled support loss over mc_samples noise samples.

    x: [n, H, W, C], y: [M * n, N] (labels tiled M times), phi: noise weights as tensors.
    velocity: the momentum buffers (dict, empty at the first step). Returns (state,
    velocity). Differentiable (second order) unless first_order is True (a bool tensor
    switches in the graph)."""
    adapted = {name: state[name] for name in self.adapted}
    mixing = self.mixing(seed, x) if self.mixup else None
    if mixing is not None:  # no noise: MC copies would all be the same, one is the mean
      mc_samples, y = 1, y[:x.shape[0]]
      y = layers.mix(y, tf.cast(mixing.lam, y.dtype), mixing.perm)
    if self.mc_chunks > 1 and mc_samples > 1:
      grads = mc_chunks.chunked_gradients(
          lambda *chunk: self._support_gradients(state, adapted, phi, *chunk), x, y, seed,
          mc_samples, self.mc_chunks)
    else:
      grads = self._support_gradients(state, adapted, phi, x, y, seed, mc_samples, mixing)
    grads = inner_sgd.order(grads, first_order)
    updated, velocity = inner_sgd.update(state, grads, self.inner_rates(state, step), velocity,
                                         self.momentum, self.weight_decay)
    new = dict(state)
    new.pop(batch_norm.OFFSETS, None)  # adapt gives the next state the next step's
    new.update(updated)
    return new, velocity

  def _support_gradients(self, state, adapted, phi, x, y, seed, mc_samples, mixing=None):
    """Gradients (dict like `adapted`) of the mean support loss over mc_samples noise
    samples drawn from `seed` (plus the noise penalty); y [mc_samples * n, N]."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(adapted)
      logits = self.network(x, theta=state, sample=True, seed=seed, copies=mc_samples,
                            phi=phi, beta=state.get(batch_norm.OFFSETS),
                            **({'mix': mixing} if mixing is not None else {}))
      loss = self.objective.loss(logits, y)
      if self.noise_penalty:
        loss += self.noise_penalty * self.network.noise_penalty(
            x, state, phi=phi, beta=state.get(batch_norm.OFFSETS))
    return tape.gradient(loss, adapted)

  def mixing(self, seed: tf.Tensor, x: tf.Tensor) -> layers.Mixing:
    """The mixup of one inner step's support batch x [n, ...] (mixup.draw)."""
    return mixup_lib.draw(seed, x, self.mixup, self.mixup_alpha, self.network.mixable_layers)

  def adapt(self, support_x: tf.Tensor, support_y: tf.Tensor, seed: tf.Tensor, mc_samples: int = 1,
            start: dict | None = None, iteration: tf.Tensor | None = None,
            last_only: bool = False) -> list:
    """[state_0, ..., state_S]; state_0 = start (default initial_state for the support's way;
    e.g. a head cut to fewer columns). phi is read once, so the steps share what depends
    only on phi and the support. `iteration` drives derivative-order annealing.

    last_only: the caller reads only state_0 and state_S; with checkpointing the recomputed
    steps (all but the kept_steps last) then run as one symbolic loop (tf.while_loop), so
    neither the traced graph nor the memory of the backward grows with S, and
    [state_0, state_S] is returned."""
    y = tf.tile(support_y, [mc_samples, 1])
    phi = self.network.read_phi()
    first_order = schedules.first_order_now(self.first_order, self.first_order_iters,
                                           iteration)
    states = [self.with_offsets(
        self.initial_state(support_y.shape[-1]) if start is None else start, 0)]
    recomputed = max(self.n_steps - self.kept_steps, 0) if self.checkpointing else 0
    looped = last_only and recomputed > 1
    if looped:
      states.append(checkpointing.looped_steps(self, states[0], phi, support_x, y, seed,
                                               mc_samples, first_order, recomputed))
    velocity = {}
    for step in range(recomputed if looped else 0, self.n_steps):
      step_seed = seeds_lib.fold_seed(seed, step)
      if step < recomputed:
        state = checkpointing.recomputed_step(self, states[-1], phi, support_x, y, step_seed,
                                              mc_samples, step, first_order)
      else:
        state, velocity = self.inner_step(states[-1], velocity, phi, support_x, y, step_seed,
                                          mc_samples, step, first_order)
      states.append(self.with_offsets(state, step + 1))
    if self.bn.keeps_statistics:
      states[-1] = self.bn.with_statistics(states[-1], support_x)
    return [states[0], states[-1]] if looped else states

  def task_outputs(self, support_x: tf.Tensor, support_y: tf.Tensor, query_x: tf.Tensor,
                   query_y: tf.Tensor, seed: tf.Tensor, mc_samples: int = 1,
                   iteration: tf.Tensor | None = None, extra: Callable | None = None,
                   weights: tf.Tensor | None = None) -> dict:
    """'loss' and the metric of the query after adaptation (and `extra`'s, as Learner's).
    With the multi-step loss (training, or explicit `weights` [S]) 'loss' is
    sum_s weights[s] * query loss after step s + 1."""
    if weights is None and self.msl_iters and iteration is not None:
      weights = schedules.multi_step_weights(iteration, self.n_steps, self.msl_iters,
                                             self.dtype)
    states = self.adapt(support_x, support_y, seed, mc_samples, iteration=iteration,
                        last_only=weights is None)
    out = self.scores(self.predict(states[-1], query_x), query_y)
    if weights is not None:
      if self.bn.keeps_statistics:
        states[1:-1] = [self.bn.with_statistics(s, support_x) for s in states[1:-1]]
      losses = [self.objective.loss(self.predict(s, query_x), query_y)
                for s in states[1:-1]] + [out['loss']]
      out['loss'] = tf.reduce_sum(tf.cast(weights, self.dtype) * tf.stack(losses))
    if extra is not None:
      out.update(extra(self, states[-1], query_x, query_y, seed))
    return out
