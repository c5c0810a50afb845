"""Meta Dropout (Lee et al., ICLR 2020): MAML whose inner loop samples the network's learned
multiplicative noise (phi, meta-trained with the initialization); evaluation averages the
support loss over Monte-Carlo noise samples. The noise itself lives in the network (its phi
group and noise_lib.multiplicative_noise), so every gradient learner composes with it through
--meta_dropout; this module is the name the paper's method is known by."""

from metadrop_tf import learners
from metadrop_tf.learners import gradient


@learners.register('metadrop')
class MetaDropout(gradient.GradientLearner):
  """MAML + Meta Dropout's noise (the network is built noisy for this learner)."""
