"""How a gradient learner's batch norms normalize (--bn_mode), one of MODES:

  transductive  every batch with its own statistics (the reference)
  inductive     an adapted state carries its support's statistics under its weights, and
                predictions normalize with them: a query image's output depends on it alone
  per_step      MAML++ BNRS + BNWB: inductive, with learned offsets per inner step (the state
                after s steps uses offsets s)
  running       predictions normalize with running averages of support statistics tracked
                during meta-training (PyTorch-MAML's non-episodic norm)

The inner loop's support batches are normalized with their own statistics in every mode.
"""

import tensorflow as tf

from metadrop_tf import components
from metadrop_tf import config as config_lib
from metadrop_tf.episodes import sampling
from metadrop_tf.learners import inner_rates

config_lib.document(
    bn_mode='Batch norm statistics: transductive (the reference: each batch its own, query '
            'included) or inductive (the query is normalized with the support statistics of the '
            'adapted weights, so each query prediction depends on that image alone) or per_step '
            '(MAML++ BNRS + BNWB: inductive, with learned offsets per inner step) or running '
            '(the query normalized with running averages of support statistics tracked during '
            'meta-training, as PyTorch-MAML).')

MODES = ('transductive', 'inductive', 'per_step', 'running')
for _mode in MODES:
  components.declare('batch norm', _mode)
STATISTICS = 'bn_statistics'  # key of an adapted state's support statistics
OFFSETS = 'bn_offsets'  # key of a state's batch-norm offsets (per_step: those of its step)
RUNNING_MOMENTUM = 0.1  # running: weight of each meta-batch in the averages


class BatchNormMode:
  """One of MODES for a network, adapted by n_steps inner steps.

  Args:
    network: the learner's network; for 'running' it must track running statistics
      (network.track_running_statistics).
    n_steps: S.
    mode: one of MODES.
  Attributes:
    offsets: per_step: the learned offsets, [S + 1, C] per norm starting at zero (they
      replace the network's beta); else None.
  """

  def __init__(self, network, n_steps: int, mode: str = 'transductive'):
    if mode not in MODES:
      raise ValueError(f'`bn_mode={mode}` must be one of {list(MODES)}')
    self.network, self.mode = network, mode
    self.inductive = mode in ('inductive', 'per_step')
    self.running = mode == 'running'
    self.offsets = None
    if mode == 'per_step':
      self.offsets = inner_rates.StepRates(
          {name: (n_steps + 1,) + tuple(v.shape) for name, v in network.beta.items()}, 0.0,
          dtype=network.dtype, prefix='bnstep')

  @property
  def keeps_statistics(self) -> bool:
    """Whether an adapted state carries statistics to normalize its predictions with."""
    return self.inductive or self.running

  def unused_variables(self) -> set:
    """ids of the network's variables this mode replaces (per_step: the offsets beta)."""
    return {id(v) for v in self.network.beta.values()} if self.offsets is not None else set()

  def with_statistics(self, state: dict, support_x: tf.Tensor) -> dict:
    """state plus, under STATISTICS, its support statistics under its weights (inductive; the
    support [n, H, W, C]) or the network's running statistics (running)."""
    if self.running:
      return {**state, STATISTICS: self.network.running_statistics()}
    statistics = self.network.batch_statistics(support_x, state, beta=state.get(OFFSETS))
    return {**state, STATISTICS: statistics}

  def training_state_share(self, episode: sampling.Episode, total_tasks: int) -> list | None:
    """running: the support's batch statistics under the meta-learned weights (what
    PyTorch-MAML's first inner forward records), summed over the tasks of `episode`
    (support_x [B, n, H, W, C]) and divided by total_tasks; None in the other modes."""
    if not self.running:
      return None
    per_task = [self.network.batch_statistics(episode.support_x[b])
                for b in range(episode.support_x.shape[0])]
    return tf.nest.map_structure(lambda *t: tf.stop_gradient(tf.add_n(t) / total_tasks),
                                 *per_task)

  def update_training_state(self, share: list | None) -> None:
    """running <- (1 - RUNNING_MOMENTUM) * running + RUNNING_MOMENTUM * share (running)."""
    if self.running:
      self.network.update_running_statistics(share, RUNNING_MOMENTUM)
