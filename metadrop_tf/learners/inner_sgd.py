"""The inner optimizer of a gradient learner: SGD with optional weight decay and momentum, as
torch.optim.SGD (PyTorch-MAML's options), and the order of its gradients."""

import tensorflow as tf

from metadrop_tf import config as config_lib

config_lib.document(
    first_order='Stop gradients through the inner gradients (first-order approximation).',
    inner_momentum='Momentum of the inner SGD (as torch.optim.SGD); 0: plain SGD.',
    inner_weight_decay='Weight decay of the inner SGD (added to the inner gradient).')


def order(grads: dict, first_order: bool | tf.Tensor) -> dict:
  """grads, with the gradient through them stopped when first_order is True (a Python bool,
  or a bool tensor that switches in the graph: derivative-order annealing)."""
  if isinstance(first_order, bool):
    return {name: tf.stop_gradient(g) for name, g in grads.items()} if first_order else grads
  return {name: tf.cond(first_order, lambda g=g: tf.stop_gradient(g), lambda g=g: g)
          for name, g in grads.items()}


def update(params: dict, grads: dict, rates: dict, velocity: dict, momentum: float = 0.0,
           weight_decay: float = 0.0) -> tuple:
  """(new params, new velocity) of one step on the parameters in grads:
  d = g + weight_decay * p; v = momentum * v + d (v = d at the first step, velocity empty);
  p <- p - rate * v. rates: name -> a scalar or a tensor that broadcasts to the parameter."""
  if weight_decay:
    grads = {name: g + weight_decay * params[name] for name, g in grads.items()}
  if momentum:
    grads = {name: momentum * velocity[name] + g if name in velocity else g
             for name, g in grads.items()}
    velocity = grads
  return {name: params[name] - rates[name] * grads[name] for name in grads}, velocity
