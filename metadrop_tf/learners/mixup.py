"""Support mixup, a regularizer baseline of the paper (--inner_mixup): every inner step's
support batch mixed with a permutation of itself, at the input ('input') or at a layer drawn
per step ('manifold'), with the labels mixed alike."""

import tensorflow as tf
import tensorflow_probability as tfp

from metadrop_tf import components
from metadrop_tf import config as config_lib
from metadrop_tf import seeds as seeds_lib
from metadrop_tf.nets import layers

config_lib.document(
    inner_mixup="Mix every inner step's support batch with a permutation of itself: input "
                '(mixup of images and labels) or manifold (the input of a layer drawn per step; '
                'manifold mixup); empty: off. Not with noise.',
    mixup_alpha='Mixup weights lam ~ Beta(mixup_alpha, mixup_alpha).')

KINDS = ('', 'input', 'manifold')  # '': off
for _kind in KINDS[1:]:
  components.declare('mixup', _kind, ('mixup_alpha',))


def draw(seed: tf.Tensor, x: tf.Tensor, kind: str, alpha: float,
         mixable_layers: int) -> layers.Mixing:
  """The mixup of one inner step's support batch x [n, ...] drawn from the step's seed [2]:
  lam ~ Beta(alpha, alpha), a uniform permutation of the n examples, and the layer (0, the
  input, for 'input'; uniform over [0, mixable_layers) for 'manifold')."""
  seeds = tf.random.experimental.stateless_split(seeds_lib.fold_seed(seed, seeds_lib.MIXUP), 3)
  alpha = tf.constant(alpha, tf.float32)
  lam = tfp.distributions.Beta(alpha, alpha).sample(seed=seeds[0])
  n = tf.shape(x)[0]
  perm = tf.argsort(tf.random.stateless_uniform([n], seeds[1]))
  layer = tf.constant(0, tf.int32)
  if kind == 'manifold':
    layer = tf.random.stateless_uniform([], seeds[2], 0, mixable_layers, dtype=tf.int32)
  return layers.Mixing(layer, lam, perm)
