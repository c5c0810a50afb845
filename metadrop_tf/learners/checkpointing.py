"""Gradient checkpointing of a gradient learner's inner loop (--gradient_checkpointing): an
inner step whose activations are not kept for the outer backward but recomputed there. The
noise is stateless, so the recomputation is exact; the meta-gradient is the plain loop's.

  recomputed_step   one step, written with tf.custom_gradient
  looped_steps      the first n steps as one tf.while_loop of recomputed steps, so neither the
                    traced graph nor the backward's memory grows with the steps
"""

from typing import TYPE_CHECKING

import tensorflow as tf

from metadrop_tf import components
from metadrop_tf import config as config_lib
from metadrop_tf import seeds as seeds_lib
from metadrop_tf.learners import batch_norm

if TYPE_CHECKING:  # for annotations only: gradient imports this module
  from metadrop_tf.learners import gradient

config_lib.document(
    gradient_checkpointing='Recompute the inner steps in the backward pass instead of keeping '
                           'their activations: the same results in memory nearly flat in '
                           '--n_steps, for about 1.2-1.3x the time (docs/memory.md).',
    checkpoint_kept_steps='With --gradient_checkpointing: the last this many inner steps keep '
                          'their activations instead of being recomputed (each saves one '
                          'recomputation for about one step of memory); 0: recompute every step.')

components.declare('gradient checkpointing', 'True', ('checkpoint_kept_steps',))


def looped_steps(learner: 'gradient.GradientLearner', state: dict, phi: dict, x: tf.Tensor,
                 y: tf.Tensor, seed: tf.Tensor, mc_samples: int, first_order: bool | tf.Tensor,
                 n_steps: int) -> dict:
  """The state after the learner's first n_steps inner steps, recomputed, as a tf.while_loop
  over the step (the same seeds, rates and offsets per step as the unrolled loop).

  state: dict of tensors; phi: the noise weights; x [n, H, W, C], y [M * n, N]; seed [2]."""
  names = [n for n in state if n != batch_norm.OFFSETS]
  groups = ['beta'] + [g for g in ('rates', 'offsets') if getattr(learner, g) is not None]
  pinned = {group: learner.variable_values(group) for group in groups}

  def body(step, *values):
    new = recomputed_step(learner, dict(zip(names, values)), phi, x, y,
                          seeds_lib.fold_seed(seed, step), mc_samples, step, first_order,
                          pinned)
    return (step + 1, *[new[n] for n in names])

  _, *values = tf.while_loop(lambda step, *_: step < n_steps, body,
                             (tf.constant(0), *[state[n] for n in names]),
                             maximum_iterations=n_steps)
  return learner.with_offsets(dict(zip(names, values)), n_steps)


def recomputed_step(learner: 'gradient.GradientLearner', state: dict, phi: dict, x: tf.Tensor,
                    y: tf.Tensor, seed: tf.Tensor, mc_samples: int, step: int | tf.Tensor,
                    first_order: bool | tf.Tensor, pinned: dict | None = None) -> dict:
  """learner.inner_step whose activations are recomputed in the outer backward.

  Written with tf.custom_gradient: tf.recompute_grad runs its function with every tape
  stopped, so the inner step's own gradient (its tape) would be None. state and phi are
  explicit inputs so the meta-gradient reaches them; variables read inside (beta, learned
  rates) come back through custom_gradient's `variables`, or with `pinned` ({group: {name:
  tensor}} of learner.variable_values, in a while loop) as explicit inputs too.
  """
  names, phi_names = [n for n in state if n != batch_norm.OFFSETS], list(phi)
  n_state, n_phi = len(names), len(phi_names)
  pinned = pinned or {}
  pinned_flat = tf.nest.flatten(pinned)

  def forward(tensors):
    learner.pin(tf.nest.pack_sequence_as(pinned, list(tensors[n_state + n_phi:]))
                if pinned else None)
    try:
      return step_outputs(tensors)
    finally:
      learner.pin(None)

  def step_outputs(tensors):
    # Per-step offsets are read here, inside, so custom_gradient returns their gradient.
    current = learner.with_offsets(dict(zip(names, tensors[:n_state])), step)
    if pinned and learner.offsets is None:  # the network's offsets, as an explicit input
      current[batch_norm.OFFSETS] = learner.variable_values('beta')
    noise = dict(zip(phi_names, tensors[n_state:n_state + n_phi]))
    # Nothing of the step may start before its inputs exist: the noise depends on the seed
    # alone, so a traced step would otherwise draw it for every step (and task) at once, in
    # the forward pass, and hold it until the backward recomputation.
    with tf.control_dependencies(tensors):
      gated = [tf.identity(t) for t in (x, y, seed)]
    new, _ = learner.inner_step(current, {}, noise, *gated, mc_samples, step, first_order)
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

  outputs = recomputed(*[state[n] for n in names], *[phi[n] for n in phi_names], *pinned_flat)
  return dict(zip(names, outputs))
