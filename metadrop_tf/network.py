"""The network interface the learners use (metadrop_tf/learners); model.py's conv-4 is the
first implementation, and a new backbone subclasses Network and writes only its topology.

  theta, phi, beta         parameter groups, name -> variable: theta is what an inner loop may
                           adapt, phi Meta Dropout's noise generator (same names as the theta
                           it perturbs), beta meta-learned only (batch-norm offsets)
  head_names               the theta names of the classifier head (ANIL adapts these)
  select(spec)             theta names an --adapt_params value selects
  initial_theta(), read_phi()   the groups as dicts of tensors
  call(x, theta=, sample=, seed=, copies=, phi=, statistics=, beta=)
                           logits [copies * n, N] from explicit fast weights (dicts of
                           tensors; the variables when None), batch norm with given
                           statistics (inductive) or the batch's, and given offsets beta
  batch_statistics(x, theta=, beta=)   per batch norm, (mean, variance) of the batch x
  features(x, theta=...)   the representation [n, F] the head reads
  shift_units(), call(..., shifts=)   layers whose pre-activations a learner may shift per
                           input (conditionally shifted neurons), name -> units
  noise_scales(x)          name -> deterministic noise factors (monitoring; {} without noise)
  meta_variables()         what the outer loop trains (phi only when noisy)
The forward never assigns to variables, so an inner loop passes fast weights through it.
"""

from typing import Optional

import keras
import tensorflow as tf


class Network(keras.Model):
  """Parameter groups and the interface's bookkeeping; subclasses create their weights with
  self._weight(group, name, shape, initializer) and implement call, features, noise_scales.

  Args:
    maml: no noise: phi is created (same checkpoints either way) but never used or trained.
    seed: the first of the initializer seeds (self._next_seed()).
  """

  head_names = ('dense_kernel', 'dense_bias')

  def __init__(self, maml: bool = False, seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    self.maml = maml
    self._seed = seed
    self._names = {'theta': [], 'phi': [], 'beta': []}

  @property
  def noisy(self) -> bool:
    """Whether sampling forwards draw Meta Dropout's noise."""
    return not self.maml

  def normalize_inputs(self, channels: int) -> None:
    """Creates the per-channel input normalization (non-trainable `input_mean`, `input_std`,
    [channels]; set them with set_input_statistics): the forward then subtracts the mean and
    divides by the std as its first op, so data, attacks and serving stay in pixels in [0, 1]."""
    for name, value in (('input_mean', 'zeros'), ('input_std', 'ones')):
      setattr(self, name, self.add_weight(shape=(channels,), initializer=value, name=name,
                                          dtype=self.dtype, trainable=False))

  def set_input_statistics(self, mean, std) -> None:
    self.input_mean.assign(tf.constant(mean, self.dtype))
    self.input_std.assign(tf.constant(std, self.dtype))

  def prepare_input(self, x):
    """x as the network's dtype, normalized per channel when normalize_inputs was called.
    Images without a channel axis take one."""
    x = tf.cast(x, self.dtype)
    if not hasattr(self, 'input_mean'):
      return x
    return (x - self.input_mean) / self.input_std

  def track_running_statistics(self) -> None:
    """Creates running averages of the batch statistics of every batch norm (non-trainable,
    one mean and one variance per offset in beta, in beta's order: the order of
    batch_statistics), for --bn_mode=running."""
    for name, offset in self.beta.items():
      for kind, value in (('mean', 'zeros'), ('var', 'ones')):
        setattr(self, f'running_{kind}_{name}', self.add_weight(
            shape=offset.shape, initializer=value, name=f'running_{kind}_{name}',
            dtype=self.dtype, trainable=False))

  def running_statistics(self) -> list:
    """[(mean, variance)] of every batch norm, as tensors (track_running_statistics)."""
    return [(tf.convert_to_tensor(getattr(self, f'running_mean_{name}')),
             tf.convert_to_tensor(getattr(self, f'running_var_{name}'))) for name in self.beta]

  def update_running_statistics(self, statistics, momentum: float) -> None:
    """running <- (1 - momentum) * running + momentum * statistics, for each batch norm."""
    for name, (mean, variance) in zip(self.beta, statistics):
      for kind, value in (('mean', mean), ('var', variance)):
        variable = getattr(self, f'running_{kind}_{name}')
        variable.assign((1 - momentum) * variable + momentum * value)

  def _next_seed(self):
    self._seed += 1
    return self._seed

  def _weight(self, group, name, shape, initializer):
    """Creates a variable as its own attribute, so tf.train.Checkpoint tracks it by name."""
    attr = f'{group}_{name}'
    setattr(self, attr, self.add_weight(shape=shape, initializer=initializer, name=attr,
                                        dtype=self.dtype))
    self._names[group].append(name)

  def _group(self, group):
    return {name: getattr(self, f'{group}_{name}') for name in self._names[group]}

  def select(self, spec: str) -> Optional[list]:
    """theta names chosen by spec: '' (None: all), 'head', or comma-separated names or name
    prefixes (e.g. 'conv3,dense'). Raises ValueError for a part that matches nothing."""
    if not spec:
      return None
    chosen = []
    for part in (p.strip() for p in spec.split(',')):
      matches = list(self.head_names) if part == 'head' else [
          n for n in self._names['theta'] if n.startswith(part)]
      if not matches:
        raise ValueError(f'--adapt_params part {part!r} matches no parameter of '
                         f'{self._names["theta"]}')
      chosen += [m for m in matches if m not in chosen]
    return chosen

  def meta_variables(self):
    """The outer loop's trained variables: theta, phi and beta (metadrop); theta and beta (MAML)."""
    groups = ('theta', 'phi', 'beta') if self.noisy else ('theta', 'beta')
    return [v for g in groups for v in self._group(g).values()]

  def initial_theta(self):
    """theta as a dict of tensors: the start of the inner loop."""
    return {k: tf.convert_to_tensor(v) for k, v in self.theta.items()}

  def read_phi(self):
    """phi as a dict of tensors. Forwards given the same tensors share the work that depends
    only on phi and the images (the first block's noise logits across inner steps)."""
    return {k: tf.convert_to_tensor(v) for k, v in self.phi.items()}

  @property
  def theta(self) -> dict:
    """The adapted group, name -> variable (e.g. conv<b>_kernel/bias, dense_kernel [F, N])."""
    return self._group('theta')

  @property
  def phi(self) -> dict:
    """The noise generator, name -> variable (same names as theta)."""
    return self._group('phi')

  @property
  def beta(self) -> dict:
    """Meta-learned only, never adapted (e.g. batch-norm offsets)."""
    return self._group('beta')

  def features(self, x, theta=None, sample=False, seed=None, copies=1, phi=None):
    raise NotImplementedError

  def noise_scales(self, x, theta=None) -> dict:
    raise NotImplementedError

  def shift_units(self) -> dict:
    """name -> units of the layers `call(..., shifts=)` can shift; {}: none (e.g. ResNet-12)."""
    return {}
