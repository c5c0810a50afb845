"""MAML (Finn et al. 2017), second order, and its first-order approximation (FOMAML)."""

from metadrop_tf import config as config_lib
from metadrop_tf import learners
from metadrop_tf.learners import gradient
from metadrop_tf.nets import network as network_lib


@learners.register('maml')
class MAML(gradient.GradientLearner):
  """MAML: the reference's baseline. With --meta_dropout, Meta Dropout (same as metadrop)."""


@learners.register('fomaml')
class FOMAML(gradient.GradientLearner):
  """First-order MAML: the inner gradients are constants for the meta-gradient."""

  @classmethod
  def from_config(cls, network: network_lib.Network, config: config_lib.Config,
                  **kwargs: object) -> 'FOMAML':
    kwargs['first_order'] = True
    return super().from_config(network, config, **kwargs)
