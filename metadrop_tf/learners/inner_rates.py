"""Learned per-parameter variables of a gradient learner: inner learning rates (Meta-SGD's per
element, MAML++ LSLR's per parameter and step) and MAML++'s per-step batch-norm offsets, and
the object that holds them in checkpoints."""

import keras
import tensorflow as tf

from metadrop_tf import config as config_lib

config_lib.document(
    lslr='MAML++: learned inner learning rate per parameter tensor and inner step.')


class StepRates(keras.Model):
  """Learned variables, one per named parameter, of `shape` each (e.g. the parameter's shape
  for Meta-SGD, [S] for LSLR, [S + 1, C] for per-step offsets), initialized to `value`.

  Args:
    shapes: parameter name -> shape of its variable.
    value: the initial value of every element.
    dtype: of the variables.
    trainable: meta-learned (False: fixed at value).
    prefix: the variables are attributes f'{prefix}_{name}' (names in checkpoints).
  """

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
    """name -> the current value (tensor of its shape)."""
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


def own_variables(rates: keras.Model | None, offsets: keras.Model | None) -> keras.Model | None:
  """The one object checkpoints save as a gradient learner's 'learner': the rates alone (as
  runs made before per-step offsets saved them), the offsets, or both; None without either."""
  if offsets is None:
    return rates
  return LearnerVariables(rates, offsets)
