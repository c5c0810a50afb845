"""Meta-SGD (Li et al. 2017): a learned inner learning rate per element of every adapted
parameter, meta-trained with the initialization (initialized to --inner_lr)."""

from metadrop_tf import learners
from metadrop_tf.learners import gradient
from metadrop_tf.learners import inner_rates


@learners.register('metasgd')
class MetaSGD(gradient.GradientLearner):
  """GradientLearner whose inner rates are meta-learned tensors of the parameters' shapes
  (learn_rates=False keeps them at inner_lr: then it computes MAML's meta-gradient)."""

  def __init__(self, network, n_steps, inner_lr, learn_rates=True, **options):
    if options.get('lslr'):
      raise ValueError('`lslr` (per-step rates) and `learner=metasgd` (per-element rates) '
                       'are two kinds of learned rates; choose one')
    super().__init__(network, n_steps, inner_lr, **options)
    shapes = {name: tuple(network.theta[name].shape) for name in self.adapted}
    if self.zero_head:  # the head's width is the task's way: one rate per row, every class
      shapes.update({name: shapes[name][:-1] + (1,) for name in network.head_names})
    self.rates = inner_rates.StepRates(shapes, inner_lr, dtype=network.dtype,
                                       trainable=learn_rates)
    self.own = inner_rates.own_variables(self.rates, self.offsets)

  def inner_rates(self, state: dict, step: int) -> dict:
    """The learned rates (every step); a state whose parameter is cut (e.g. a head of fewer
    columns in the visualization) takes the matching leading slice (a zero head's [.., 1]
    rates broadcast over the task's classes)."""
    del step
    rates = dict(self.variable_values('rates'))
    for name, rate in rates.items():
      shape = state[name].shape
      if rate.shape != shape:
        rates[name] = rate[tuple(slice(0, n) for n in shape)]
    return rates
