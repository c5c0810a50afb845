"""The MAML family's inner loop, written once: SGD on the network's adapted parameters (theta).

Every gradient-based learner is a GradientLearner with other options or rates:
  which parameters adapt     `adapted` (ANIL: the head; --adapt_params)
  inner learning rates       inner_rates(): a constant (MAML), learned per element (Meta-SGD),
                             learned per parameter and step (MAML++ LSLR, --lslr)
  inner SGD                  momentum and weight decay (PyTorch-MAML's options)
  order                      first_order, or first order for the first N iterations and second
                             order after (MAML++ derivative-order annealing)
  meta-objective             the last step's query loss, or (MAML++ multi-step loss) a
                             weighted sum of the query losses after every step, annealed
                             toward the last step
  head                       meta-learned, or zero at the start of every task (--zero_head)
  support mixup              each inner step's support batch mixed with a permutation of
                             itself (--inner_mixup=input: the images and labels; manifold: the
                             input of a layer drawn per step, and the labels), a regularizer
                             baseline of the paper
  noise                      Meta Dropout's: the network samples its noise generator phi
                             whenever it was built noisy (--learner=metadrop, --meta_dropout)
  batch norm                 transductive (the reference: every batch its own statistics), or
                             inductive (--bn_mode=inductive): the adapted state carries the
                             support's statistics under its weights, and predictions normalize
                             with them, so a query image's output depends on it alone;
                             per_step (MAML++ BNRS + BNWB): inductive, with learned offsets
                             per inner step (state s, after s steps, uses offsets s); running:
                             the query normalized with running averages of support statistics
                             tracked during meta-training (PyTorch-MAML's non-episodic norm;
                             training_state_share / update_training_state)
"""

from typing import Optional
from typing import Sequence

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from metadrop_tf import components
from metadrop_tf import layers
from metadrop_tf import meta_learner
from metadrop_tf import objectives
from metadrop_tf.learners import base

MSL_MIN_WEIGHT = 0.03  # MAML++: the non-final steps' weights end at this / S
RUNNING_MOMENTUM = 0.1  # --bn_mode=running: weight of each meta-batch in the averages
MIXUP_STREAM = 5000  # mixup draws of inner step s: fold_seed(step seed, MIXUP_STREAM)
MC_CHUNK_STREAM = 6000  # noise of MC chunk c (mc_chunks > 1): fold_seed(step seed, 6000, c)
MIXUP_KINDS = ('', 'input', 'manifold')
for _kind in MIXUP_KINDS[1:]:
  components.declare('mixup', _kind, ('mixup_alpha',))
components.declare('gradient checkpointing', 'True', ('checkpoint_kept_steps',))
tfd = tfp.distributions
STATISTICS = 'bn_statistics'  # key of an adapted state's support statistics (inductive)
OFFSETS = 'bn_offsets'  # key of a state's batch-norm offsets (per_step: those of its step)


class StepRates(keras.Model):
  """Learned inner learning rates, one variable per adapted parameter, `shape` each (e.g.
  the parameter's shape for Meta-SGD, [S] for LSLR), initialized to `value`."""

  def __init__(self, shapes: dict, value: float, dtype='float32', trainable=True, prefix='lr'):
    super().__init__(dtype=dtype)
    self.names, self.prefix = list(shapes), prefix
    for name, shape in shapes.items():
      variable = self.add_weight(shape=shape, initializer='zeros', name=f'{prefix}_{name}',
                                 dtype=dtype, trainable=trainable)
      # Keras' Constant initializer rounds through float32; a float64 0.2 must be exact.
      variable.assign(tf.fill(shape, tf.constant(value, dtype)))
      setattr(self, f'{prefix}_{name}', variable)
    self.built = True

  def rates(self) -> dict:
    return {name: tf.convert_to_tensor(getattr(self, f'{self.prefix}_{name}'))
            for name in self.names}


class LearnerVariables(keras.Model):
  """The learner's own variables when it has several kinds: learned rates (or None) and
  per-step batch-norm offsets."""

  def __init__(self, rates, offsets):
    super().__init__()
    if rates is not None:
      self.rates = rates
    self.offsets = offsets
    self.built = True


class GradientLearner(base.Learner):
  """Adapts theta by S steps of SGD on the (noisy, MC-averaged) support loss.

  Args:
    network: the network; built noisy, adaptation samples Meta Dropout's noise.
    n_steps: S.
    inner_lr: SGD step size (the start of learned rates).
    first_order: stop gradients through the inner gradients.
    adapted: names of the theta parameters the inner loop adapts (None: all); the others stay
      at their meta-learned values during adaptation.
    momentum, weight_decay: of the inner SGD, as torch.optim.SGD: d = g + wd * p,
      v = momentum * v + d (v = d at the first step), p -= lr * v.
    zero_head: the head starts every task at zero ([F, N] of the task's N, so another way can
      be evaluated) and is not meta-learned.
    lslr: learned per-parameter, per-step inner rates (MAML++).
    msl_iters: > 0: the meta-objective is the multi-step loss for iterations < msl_iters.
    first_order_iters: first order for iterations < this, then second order.
    checkpointing: recompute each inner step's activations in the outer backward instead of
      keeping them (gradient checkpointing: the same result in less memory, README; not with
      momentum).
    kept_steps: with checkpointing, the last this many steps keep their activations instead
      (each saves a recomputation, a forward and backward of the support, for about one
      step's activations more at the peak; README Memory).
    inductive: inductive batch norm (module docstring): adapted states carry the support's
      batch-norm statistics under their weights (network.batch_statistics), and predict
      normalizes with them. The inner loop's support batches are normalized with their own
      statistics in both modes.
    per_step_offsets: MAML++'s per-step batch-norm offsets ([S + 1, C] per norm, learned, in
      `own`, starting at zero; the network's beta is then unused); with inductive, per_step.
    running: predictions normalize with the network's running statistics (it must track
      them: track_running_statistics), which training updates (training_state_share).
    objective: the task's loss (inner and outer) and metric (metadrop_tf.objectives).
    mixup: '' (off), 'input' or 'manifold': mix every inner step's support batch (mixing);
      not with noise (one copy). mixup_alpha: lam ~ Beta(mixup_alpha, mixup_alpha).
    noise_penalty: > 0: the inner loss adds this times network.noise_penalty of the support
      (information dropout's KL term).
    mc_chunks: an inner step on M > 1 noise samples takes them in this many chunks (about
      M / mc_chunks each), one after another, each with its own draws, and averages their
      gradients by size (the meta-test's memory; 1: one pass, the reference).
  """

  # The settings this family reads beyond the core run settings (metadrop_tf.components).
  OPTIONS = ('adapt_params', 'first_order', 'inner_momentum', 'inner_weight_decay', 'zero_head',
             'lslr', 'msl_iters', 'first_order_iters', 'gradient_checkpointing', 'bn_mode',
             'inner_mixup', 'meta_dropout', 'noise_type')

  def __init__(self, network, n_steps: int, inner_lr: float, first_order: bool = False,
               adapted: Optional[Sequence[str]] = None, momentum: float = 0.0,
               weight_decay: float = 0.0, zero_head: bool = False, lslr: bool = False,
               msl_iters: int = 0, first_order_iters: int = 0, checkpointing: bool = False,
               inductive: bool = False, per_step_offsets: bool = False,
               running: bool = False,
               objective: objectives.Objective = objectives.CLASSIFICATION,
               mixup: str = '', mixup_alpha: float = 2.0, noise_penalty: float = 0.0,
               mc_chunks: int = 1, kept_steps: int = 0):
    super().__init__(network, n_steps, objective)
    if mixup not in MIXUP_KINDS:
      raise ValueError(f'--inner_mixup={mixup!r} must be one of {list(MIXUP_KINDS)}')
    if mixup and network.noisy:
      raise ValueError('--inner_mixup is a baseline for learners without noise; drop '
                       '--meta_dropout or use --learner=maml')
    self.mixup, self.mixup_alpha = mixup, float(mixup_alpha)
    self.noise_penalty = float(noise_penalty)
    self.inductive = inductive
    self.running = running
    self.per_step_offsets = per_step_offsets
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
      raise ValueError('--zero_head needs the head adapted (it starts every task at zero); '
                       f'--adapt_params selects {self.adapted}')
    self.msl_iters, self.first_order_iters = msl_iters, first_order_iters
    if checkpointing and momentum:
      raise ValueError('--gradient_checkpointing does not carry --inner_momentum buffers '
                       'across steps; use one of them')
    self.checkpointing = checkpointing
    self.kept_steps = kept_steps
    self.mc_chunks = mc_chunks
    self._pinned = None  # variable_values inside a looped step (_recomputed_step)
    self.rates = self.offsets = None
    if lslr:
      self.rates = StepRates({name: (n_steps,) for name in self.adapted}, inner_lr,
                             dtype=network.dtype, prefix='lslr')
    if per_step_offsets:
      self.offsets = StepRates({name: (n_steps + 1,) + tuple(v.shape)
                                for name, v in network.beta.items()}, 0.0,
                               dtype=network.dtype, prefix='bnstep')
    self.own = self.own_variables()

  def own_variables(self):
    """The one object checkpoints save as 'learner': the rates alone (as runs made before
    per-step offsets saved them), the offsets, or both; None without either."""
    if self.offsets is None:
      return self.rates
    return LearnerVariables(self.rates, self.offsets)

  @classmethod
  def from_config(cls, network, config, **kwargs):
    """The learner a Config describes (its inner-loop and MAML++ options)."""
    options = dict(first_order=config.first_order,
                   adapted=network.select(config.adapt_params), momentum=config.inner_momentum,
                   weight_decay=config.inner_weight_decay, zero_head=config.zero_head,
                   lslr=config.lslr, msl_iters=config.msl_iters,
                   first_order_iters=config.first_order_iters,
                   checkpointing=config.gradient_checkpointing,
                   kept_steps=config.checkpoint_kept_steps,
                   inductive=config.bn_mode in ('inductive', 'per_step'),
                   per_step_offsets=config.bn_mode == 'per_step',
                   running=config.bn_mode == 'running',
                   objective=objectives.for_config(config),
                   mixup=config.inner_mixup, mixup_alpha=config.mixup_alpha,
                   noise_penalty=(config.noise_penalty
                                  if config.noise_type in ('info_dropout', 'vib') else 0.0),
                   mc_chunks=config.test_mc_chunks)
    options.update(kwargs)
    return cls(network, config.n_steps, config.inner_lr, **options)

  @property
  def noisy(self) -> bool:
    return self.network.noisy

  def meta_variables(self) -> list:
    """As Learner's, less the head's variables with zero_head (never used then)."""
    unused = {id(v) for name, v in self.network.theta.items()
              if self.zero_head and name in self.network.head_names}
    if self.per_step_offsets:  # the per-step offsets replace the network's
      unused |= {id(v) for v in self.network.beta.values()}
    return [v for v in super().meta_variables() if id(v) not in unused]

  def initial_state(self, way: Optional[int] = None) -> dict:
    """The meta-learned theta; with zero_head, its head zero with `way` columns."""
    state = self.network.initial_theta()
    if self.zero_head:
      for name in self.network.head_names:
        shape = state[name].shape.as_list()
        state[name] = tf.zeros(shape[:-1] + [way or shape[-1]], self.dtype)
    return state

  def predict(self, state, x):
    """Logits [n, N] of x [n, H, W, C]; normalized with the state's support statistics when it
    has them (inductive), else with x's own (transductive)."""
    return self.network(x, theta=state, statistics=state.get(STATISTICS),
                        beta=state.get(OFFSETS))

  def with_statistics(self, state, support_x):
    """state plus its support statistics under its weights (inductive batch norm), or the
    network's running statistics (running)."""
    if self.running:
      return {**state, STATISTICS: self.network.running_statistics()}
    statistics = self.network.batch_statistics(support_x, state, beta=state.get(OFFSETS))
    return {**state, STATISTICS: statistics}

  def training_state_share(self, episode, total_tasks):
    """With running statistics: the support's batch statistics under the meta-learned
    weights (what PyTorch-MAML's first inner forward records), summed over the tasks of
    `episode` and divided by total_tasks; None otherwise."""
    if not self.running:
      return None
    per_task = [self.network.batch_statistics(episode.support_x[b])
                for b in range(episode.support_x.shape[0])]
    return tf.nest.map_structure(lambda *t: tf.stop_gradient(tf.add_n(t) / total_tasks),
                                 *per_task)

  def update_training_state(self, share) -> None:
    """running <- (1 - RUNNING_MOMENTUM) * running + RUNNING_MOMENTUM * share."""
    if self.running:
      self.network.update_running_statistics(share, RUNNING_MOMENTUM)

  def with_offsets(self, state, step):
    """state with the batch-norm offsets of inner step `step` (per_step; else state)."""
    if self.offsets is None:
      return state
    return {**state, OFFSETS: {name: values[step]
                               for name, values in self.variable_values('offsets').items()}}

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
    (the network's offsets); read from the variables, or inside _looped_steps the values
    read once before the loop (a while loop's gradient cannot re-read variables in a
    recomputation)."""
    if self._pinned is not None:
      return self._pinned[group]
    if group == 'beta':
      return {name: tf.convert_to_tensor(v) for name, v in self.network.beta.items()}
    return getattr(self, group).rates()

  def _first_order_now(self, iteration):
    """A bool tensor (derivative-order annealing) or a Python bool: stop inner gradients?"""
    if self.first_order or not self.first_order_iters or iteration is None:
      return self.first_order
    return iteration < self.first_order_iters

  def inner_step(self, state, velocity, phi, x, y, seed, mc_samples, step, first_order):
    """One SGD step on the mean sampled support loss over mc_samples noise samples.

    x: [n, H, W, C], y: [M * n, N] (labels tiled M times), phi: noise weights as tensors.
    velocity: the momentum buffers (dict, empty at the first step). Returns (state,
    velocity). Differentiable (second order) unless first_order is True (a bool tensor
    switches in the graph).
    """
    adapted = {name: state[name] for name in self.adapted}
    mixing = self.mixing(seed, x) if self.mixup else None
    if mixing is not None:  # no noise: MC copies would all be the same, one is the mean
      mc_samples, y = 1, y[:x.shape[0]]
      y = layers.mix(y, tf.cast(mixing.lam, y.dtype), mixing.perm)
    if self.mc_chunks > 1 and mc_samples > 1:
      grads = self._chunked_gradients(state, adapted, phi, x, y, seed, mc_samples)
    else:
      grads = self._support_gradients(state, adapted, phi, x, y, seed, mc_samples, mixing)
    if isinstance(first_order, bool):
      if first_order:
        grads = {name: tf.stop_gradient(g) for name, g in grads.items()}
    else:
      grads = {name: tf.cond(first_order, lambda g=g: tf.stop_gradient(g), lambda g=g: g)
               for name, g in grads.items()}
    if self.weight_decay:
      grads = {name: g + self.weight_decay * state[name] for name, g in grads.items()}
    if self.momentum:
      grads = {name: self.momentum * velocity[name] + g if name in velocity else g
               for name, g in grads.items()}
      velocity = grads
    rates = self.inner_rates(state, step)
    new = dict(state)
    new.pop(OFFSETS, None)  # adapt gives the next state the next step's
    for name in self.adapted:
      new[name] = state[name] - rates[name] * grads[name]
    return new, velocity

  def _support_gradients(self, state, adapted, phi, x, y, seed, mc_samples, mixing=None):
    """Gradients (dict like `adapted`) of the mean support loss over mc_samples noise
    samples drawn from `seed` (plus the noise penalty); y [mc_samples * n, N]."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(adapted)
      logits = self.network(x, theta=state, sample=True, seed=seed, copies=mc_samples,
                            phi=phi, beta=state.get(OFFSETS),
                            **({'mix': mixing} if mixing is not None else {}))
      loss = self.objective.loss(logits, y)
      if self.noise_penalty:
        loss += self.noise_penalty * self.network.noise_penalty(
            x, state, phi=phi, beta=state.get(OFFSETS))
    return tape.gradient(loss, adapted)

  def _chunked_gradients(self, state, adapted, phi, x, y, seed, mc_samples):
    """_support_gradients over mc_samples in min(self.mc_chunks, mc_samples) chunks of
    sizes that differ by at most one (equal when they divide, as --test_mc_chunks asks;
    the monitoring evaluation's --eval_mc_samp need not), chunk c drawn from
    fold_seed(seed, MC_CHUNK_STREAM, c), weighted by its size. Each chunk starts after the
    previous one's gradient exists (its noise too), so one chunk's activations live at a
    time."""
    chunks = min(self.mc_chunks, mc_samples)
    sizes = [mc_samples // chunks + (c < mc_samples % chunks) for c in range(chunks)]
    total, previous = None, []
    for c, copies in enumerate(sizes):
      with tf.control_dependencies(previous):
        chunk_x, chunk_seed = tf.identity(x), tf.identity(
            meta_learner.fold_seed(seed, MC_CHUNK_STREAM, c))
      # y is the labels tiled copy by copy: its first `copies` tiles are every chunk's.
      grads = self._support_gradients(state, adapted, phi, chunk_x, y[:copies * x.shape[0]],
                                      chunk_seed, copies)
      weighted = {n: g * (copies / mc_samples) for n, g in grads.items()}
      total = weighted if total is None else {n: total[n] + weighted[n] for n in grads}
      previous = list(grads.values())
    return total

  def mixing(self, seed, x) -> layers.Mixing:
    """The mixup of one inner step's support batch x [n, ...], drawn from the step's seed:
    lam ~ Beta(alpha, alpha), a uniform permutation, and the layer (0, the input, for
    'input'; uniform over network.mixable_layers for 'manifold')."""
    seeds = tf.random.experimental.stateless_split(
        meta_learner.fold_seed(seed, MIXUP_STREAM), 3)
    alpha = tf.constant(self.mixup_alpha, tf.float32)
    lam = tfd.Beta(alpha, alpha).sample(seed=seeds[0])
    n = tf.shape(x)[0]
    perm = tf.argsort(tf.random.stateless_uniform([n], seeds[1]))
    layer = tf.constant(0, tf.int32)
    if self.mixup == 'manifold':
      layer = tf.random.stateless_uniform([], seeds[2], 0, self.network.mixable_layers,
                                          dtype=tf.int32)
    return layers.Mixing(layer, lam, perm)

  def adapt(self, support_x, support_y, seed, mc_samples=1, start=None, iteration=None,
            last_only=False):
    """[state_0, ..., state_S]; state_0 = start (default initial_state for the support's way;
    e.g. a head cut to fewer columns). phi is read once, so the steps share what depends
    only on phi and the support. `iteration` drives derivative-order annealing.

    last_only: the caller reads only state_0 and state_S; with checkpointing the recomputed
    steps (all but the kept_steps last) then run as one symbolic loop (tf.while_loop), so
    neither the traced graph nor the memory of the backward grows with S, and
    [state_0, state_S] is returned."""
    y = tf.tile(support_y, [mc_samples, 1])
    phi = self.network.read_phi()
    first_order = self._first_order_now(iteration)
    states = [self.with_offsets(
        self.initial_state(support_y.shape[-1]) if start is None else start, 0)]
    recomputed = max(self.n_steps - self.kept_steps, 0) if self.checkpointing else 0
    looped = last_only and recomputed > 1
    if looped:
      states.append(self._looped_steps(states[0], phi, support_x, y, seed, mc_samples,
                                       first_order, recomputed))
    velocity = {}
    for step in range(recomputed if looped else 0, self.n_steps):
      step_seed = meta_learner.fold_seed(seed, step)
      if step < recomputed:
        state = self._recomputed_step(states[-1], phi, support_x, y, step_seed, mc_samples,
                                      step, first_order)
      else:
        state, velocity = self.inner_step(states[-1], velocity, phi, support_x, y, step_seed,
                                          mc_samples, step, first_order)
      states.append(self.with_offsets(state, step + 1))
    if self.inductive or self.running:
      states[-1] = self.with_statistics(states[-1], support_x)
    return [states[0], states[-1]] if looped else states

  def _looped_steps(self, state, phi, x, y, seed, mc_samples, first_order, n_steps):
    """The state after adapt's first n_steps steps, recomputed, as a tf.while_loop over the
    step (the same seeds, rates and offsets per step as the unrolled loop)."""
    names = [n for n in state if n != OFFSETS]
    groups = ['beta'] + [g for g in ('rates', 'offsets') if getattr(self, g) is not None]
    pinned = {group: self.variable_values(group) for group in groups}

    def body(step, *values):
      new = self._recomputed_step(dict(zip(names, values)), phi, x, y,
                                  meta_learner.fold_seed(seed, step), mc_samples, step,
                                  first_order, pinned)
      return (step + 1, *[new[n] for n in names])

    _, *values = tf.while_loop(lambda step, *_: step < n_steps, body,
                               (tf.constant(0), *[state[n] for n in names]),
                               maximum_iterations=n_steps)
    return self.with_offsets(dict(zip(names, values)), n_steps)

  def _recomputed_step(self, state, phi, x, y, seed, mc_samples, step, first_order,
                       pinned=None):
    """inner_step whose activations are not kept for the outer backward but recomputed there
    (gradient checkpointing; the noise is stateless, so the recomputation is exact).

    Written with tf.custom_gradient: tf.recompute_grad runs its function with every tape
    stopped, so the inner step's own gradient (its tape) would be None. state and phi are
    explicit inputs so the meta-gradient reaches them; variables read inside (beta, learned
    rates) come back through custom_gradient's `variables`, or with `pinned` ({group: {name:
    tensor}} of variable_values, in a while loop) as explicit inputs too.
    """
    names, phi_names = [n for n in state if n != OFFSETS], list(phi)
    n_state, n_phi = len(names), len(phi_names)
    pinned = pinned or {}
    pinned_flat = tf.nest.flatten(pinned)

    def forward(tensors):
      self._pinned = (tf.nest.pack_sequence_as(pinned, list(tensors[n_state + n_phi:]))
                      if pinned else None)
      try:
        return step_outputs(tensors)
      finally:
        self._pinned = None

    def step_outputs(tensors):
      # Per-step offsets are read here, inside, so custom_gradient returns their gradient.
      current = self.with_offsets(dict(zip(names, tensors[:n_state])), step)
      if pinned and self.offsets is None:  # the network's offsets, as an explicit input
        current[OFFSETS] = self.variable_values('beta')
      noise = dict(zip(phi_names, tensors[n_state:n_state + n_phi]))
      # Nothing of the step may start before its inputs exist: the noise depends on the seed
      # alone, so a traced step would otherwise draw it for every step (and task) at once,
      # in the forward pass, and hold it until the backward recomputation.
      with tf.control_dependencies(tensors):
        gated = [tf.identity(t) for t in (x, y, seed)]
      new, _ = self.inner_step(current, {}, noise, *gated, mc_samples, step, first_order)
      return [new[name] for name in names]

    @tf.custom_gradient
    def recomputed(*tensors):
      def grad_fn(*upstream, variables=None):
        variables = list(variables or [])
        # Without this dependency a traced step runs the recomputation as soon as its inputs
        # exist, i.e. in the forward pass, and keeps its activations until the backward.
        with tf.control_dependencies(upstream):
          inputs = [tf.identity(t) for t in tensors]
        with tf.GradientTape() as tape:
          tape.watch(inputs)
          outputs = forward(inputs)
        grads = tape.gradient(outputs, inputs + variables, output_gradients=upstream,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return grads[:len(tensors)], grads[len(tensors):]
      return forward(tensors), grad_fn

    outputs = recomputed(*[state[n] for n in names], *[phi[n] for n in phi_names],
                         *pinned_flat)
    return dict(zip(names, outputs))

  def step_weights(self, iteration) -> tf.Tensor:
    """[S] weights of the query losses after steps 1..S (MAML++ multi-step loss): 1/S each
    at iteration 0; the non-final ones decay linearly to MSL_MIN_WEIGHT / S over msl_iters
    iterations while the last grows; from msl_iters on, all weight on the last step."""
    s = self.n_steps
    it = tf.cast(iteration, self.dtype)
    decay = 1.0 / s / self.msl_iters
    low = MSL_MIN_WEIGHT / s
    early = tf.maximum(1.0 / s - it * decay, low)
    last = tf.minimum(1.0 / s + it * (s - 1) * decay, 1.0 - (s - 1) * low)
    weights = tf.concat([tf.fill([s - 1], early), [last]], axis=0)
    final = tf.one_hot(s - 1, s, dtype=self.dtype)
    return tf.where(it < self.msl_iters, weights, final)

  def task_outputs(self, support_x, support_y, query_x, query_y, seed, mc_samples=1,
                   iteration=None, extra=None, weights=None):
    """'loss' and the metric of the query after adaptation (and `extra`'s, as Learner's).
    With the multi-step loss (training, or explicit `weights` [S]) 'loss' is
    sum_s weights[s] * query loss after step s + 1."""
    if weights is None and self.msl_iters and iteration is not None:
      weights = self.step_weights(iteration)
    states = self.adapt(support_x, support_y, seed, mc_samples, iteration=iteration,
                        last_only=weights is None)
    out = self.scores(self.predict(states[-1], query_x), query_y)
    if weights is not None:
      if self.inductive or self.running:
        states[1:-1] = [self.with_statistics(s, support_x) for s in states[1:-1]]
      losses = [self.objective.loss(self.predict(s, query_x), query_y)
                for s in states[1:-1]] + [out['loss']]
      out['loss'] = tf.reduce_sum(tf.cast(weights, self.dtype) * tf.stack(losses))
    if extra is not None:
      out.update(extra(self, states[-1], query_x, query_y, seed))
    return out
