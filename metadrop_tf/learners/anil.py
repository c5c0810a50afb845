"""ANIL (Raghu et al., ICLR 2020): the inner loop adapts only the head; the encoder is
meta-learned and stays fixed during adaptation. Any other subset: --adapt_params with any
gradient learner."""

from metadrop_tf import learners
from metadrop_tf.learners import gradient


@learners.register('anil')
class ANIL(gradient.GradientLearner):
  """GradientLearner adapting network.head_names only (unless --adapt_params says else)."""

  @classmethod
  def from_config(cls, network, config, **kwargs):
    kwargs.setdefault('adapted', network.select(config.adapt_params or 'head'))
    return super().from_config(network, config, **kwargs)
