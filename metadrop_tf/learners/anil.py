"""ANIL (Raghu et al., ICLR 2020): the inner loop adapts only the head; the encoder is
meta-learned and stays fixed during adaptation. Any other subset: --adapt_params with any
gradient learner."""

from metadrop_tf import config as config_lib
from metadrop_tf import learners
from metadrop_tf.learners import gradient
from metadrop_tf.nets import network as network_lib


@learners.register('anil')
class ANIL(gradient.GradientLearner):
  """GradientLearner adapting network.head_names only (unless --adapt_params says else)."""

  @classmethod
  def from_config(cls, network: network_lib.Network, config: config_lib.Config,
                  **kwargs: object) -> 'ANIL':
    kwargs.setdefault('adapted', network.select(config.adapt_params or 'head'))
    return super().from_config(network, config, **kwargs)
