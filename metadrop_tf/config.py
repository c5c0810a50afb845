"""The one frozen configuration of a run: defaults, validation, JSON round trip. No TF import.

The settings are the fields of `Config` (the core run settings and the options of the built-in
components, the layout of every committed config.json) and the `Option`s that components of
the user's declare beside their code (components.declare), kept in Config.extensions and read
as attributes like the fields: `config.toy_rate_factor`. config.json stores both, flat.
"""

import dataclasses
import json
import os
from typing import NamedTuple

from metadrop_tf import errors


class DatasetInfo(NamedTuple):
  """Static facts of a dataset (SPEC "Data" and "Networks")."""
  image_shape: tuple  # (H, W, C); a generated dataset's input shape (sinusoid: (1,))
  channels: int  # conv channels of the reference network (sinusoid: hidden units)
  instances: int  # images per class (a generated dataset: no limit)
  classes: dict  # split -> number of classes in the reference shards
  objective: str = 'classification'  # metadrop_tf.objectives: classification or regression
  generated: bool = False  # tasks are generated (metadrop_tf.episodes.sinusoid), no shards to load
  backbone: str = 'conv4'  # the network a run of this dataset uses by default
  inputs: str = 'images'  # what its examples are: images, or numbers (nets.network.Network.inputs)


DATASETS = {
    'omniglot': DatasetInfo((28, 28, 1), 64, 20, {'train': 4800, 'test': 1692}),
    'mimgnet': DatasetInfo((84, 84, 3), 32, 600,
                           {'train': 64, 'val': 16, 'test': 20}),
    # Classes of 732 to 1300 images: instances is the smallest class (data.RaggedShard).
    'tiered': DatasetInfo((84, 84, 3), 32, 732, {'train': 351, 'val': 97, 'test': 160}),
    # Finn et al. (2017): y = A sin(x - p) on x in [-5, 5]; an MLP of 2 x 40 hidden units.
    'sinusoid': DatasetInfo((1,), 40, 10 ** 6, {'train': 1, 'val': 1, 'test': 1},
                            objective='regression', generated=True, backbone='mlp',
                            inputs='numbers'),
}
# Flags whose default depends on --dataset when not given explicitly (metadrop_tf.cli.flags).
DATASET_DEFAULTS = {'sinusoid': {'way': 1, 'backbone': 'mlp'}}
PRECISIONS = ('float32', 'bfloat16')
NOISE_SAMPLERS = ('box_muller', 'tfp')  # metadrop_tf.noise_lib.SAMPLERS
EVAL_SPLITS = ('train', 'val', 'test')

META_OPTIMIZERS = ('adam', 'sgd')
LR_SCHEDULES = ('constant', 'cosine', 'step')
STRATEGIES = ('auto', 'one_device', 'mirrored', 'multi_worker')  # metadrop_tf.runtime.distribute


class Option(NamedTuple):
  """A setting a component declares beside its code (components.declare) rather than a field
  of Config: its default (bool, int, float or str: the flag's type) and its --help text."""
  default: object
  help: str


OPTIONS: dict = {}  # name -> Option: the declared settings that are not fields of Config
HELP: dict = {}  # field -> its --help text, documented beside the code that reads it (document)


def document(**helps: str) -> None:
  """Records the --help text of settings that are fields of Config, beside the code that reads
  them (the core settings' text is the flags module's); ValueError for a name that is not a
  field or is already documented otherwise."""
  for name, text in helps.items():
    if name not in [f.name for f in dataclasses.fields(Config)]:
      raise ValueError(f'{name!r} is not a setting of Config; declare a new option with '
                       'components.declare and config.Option')
    if HELP.get(name, text) != text:
      raise ValueError(f'the help text of {name!r} is documented twice')
    HELP[name] = text


class ConfigError(errors.UserError, ValueError):
  """A bad setting; the message is one line that names the setting (errors.py)."""


def check_split(split: str, dataset: str, val_characters: int, name: str = 'split') -> None:
  """Raises ConfigError unless `split`, the value of setting `name`, can be evaluated for this
  dataset."""
  if split not in EVAL_SPLITS:
    raise ConfigError(f'`{name}={split}` is not a split; choose one of {list(EVAL_SPLITS)}')
  if split == 'val' and dataset == 'omniglot' and not val_characters:
    raise ConfigError(f'`{name}=val`: Omniglot has no val shard; its val split is held out of '
                      'train with `val_characters=N` at training time, and this run has none')


SEED_LIMIT = 2 ** 31  # seeds are int32 in the stateless random ops and the episode streams


def check_seed(seed: int, name: str = 'seed') -> None:
  """Raises ConfigError unless `seed`, the value of setting `name`, is in [0, SEED_LIMIT)."""
  if not 0 <= seed < SEED_LIMIT:
    raise ConfigError(f'`{name}={seed}` must be in [0, 2**31)')


@dataclasses.dataclass(frozen=True)
class Config:
  """Every setting of a run. Field names are the reference's flag names where it had one."""
  dataset: str = 'omniglot'
  data_dir: str = ''  # '' means data/<dataset>
  way: int = 20
  shot: int = 1
  query: int = 15
  metabatch: int = 4
  n_steps: int = 5
  inner_lr: float = 0.1
  meta_lr: float = 1e-3
  n_train_iters: int = 60000
  n_test_iters: int = 1000
  n_test_mc_samp: int = 30
  test_metabatch: int = 0  # meta-test episodes per call; 0: auto (eval_lib.episodes_per_call)
  test_mc_chunks: int = 1  # the meta-test's MC samples in this many sequential chunks
  maml: bool = False  # the reference's flag: the same as learner='maml'
  learner: str = ''  # a name of learners.REGISTRY; '': maml with --maml, else metadrop
  import_modules: str = ''  # comma-separated modules of the user's that register components
  meta_dropout: bool = False  # add Meta Dropout's noise to any gradient learner
  noise_type: str = 'metadrop'  # the noise of noisy learners: Meta Dropout's or a baseline's
  noise_scale: float = 0.5  # std of the fixed-noise baselines (fixed_mult, fixed_add)
  noise_penalty: float = 0.01  # --noise_type=info_dropout: weight of its KL in the inner loss
  inner_mixup: str = ''  # mixup of the support in the inner loop: '', input or manifold
  mixup_alpha: float = 2.0  # lam ~ Beta(mixup_alpha, mixup_alpha)
  adapt_params: str = ''  # parameters the inner loop adapts: '' all, 'head', or name prefixes
  first_order: bool = False
  inner_momentum: float = 0.0  # PyTorch-MAML's inner SGD options
  inner_weight_decay: float = 0.0
  zero_head: bool = False  # head zero at the start of every task, not meta-learned
  lslr: bool = False  # MAML++: learned per-layer, per-step inner learning rates
  msl_iters: int = 0  # MAML++: multi-step loss, annealed to the last step, for this many its
  first_order_iters: int = 0  # MAML++: first order for this many iterations, then second
  gradient_checkpointing: bool = False  # recompute inner steps in the outer backward
  checkpoint_kept_steps: int = 0  # ... all but this many last ones (0: every step)
  meta_optimizer: str = 'adam'
  meta_momentum: float = 0.9  # of --meta_optimizer=sgd
  adam_epsilon: float = 1e-8  # the reference's (TF1 Adam)
  lr_schedule: str = 'constant'  # of meta_lr: constant, cosine (to 0 at n_train_iters), step
  lr_step_iters: int = 10000  # step schedule: multiply by lr_step_gamma every this many
  lr_step_gamma: float = 0.5
  grad_clip: float = 3.0
  backbone: str = 'conv4'  # the reference's conv-4, or resnet12
  channels: int = 0  # conv-4 width; 0 means the dataset's reference (64 Omniglot, 32 mImgNet)
  resnet_widths: str = '64,160,320,640'  # the four stage widths of resnet12
  bn_mode: str = 'transductive'
  precision: str = 'float32'
  noise_sampler: str = 'box_muller'
  intra_op_threads: int = 0  # 0: auto (metadrop_tf.runtime.threads)
  inter_op_threads: int = 0  # 0: TF's default
  bitwise_reproducible: bool = False  # grappler off (metadrop_tf.runtime.rewrites)
  strategy: str = 'auto'  # tf.distribute strategy (metadrop_tf.runtime.distribute); results do not
  cpu_devices: int = 0  # depend on it. cpu_devices > 1: split the CPU into that many devices
  seed: int = 0
  val_characters: int = 0  # Omniglot: characters held out of meta-train as a val split
  augment: bool = False  # training images: shifts (Omniglot) or crop, flip, jitter (RGB)
  normalize: bool = False  # per-channel input normalization by the training split's stats
  save_freq: int = 1000
  keep_checkpoints: int = 5
  log_freq: int = 50
  pre_adapt_freq: int = 10  # iterations between pre-adaptation query metrics (monitoring)
  eval_freq: int = 1000
  eval_split: str = 'test'  # split monitored during training (the reference uses test)
  eval_batches: int = 50  # meta-batches per monitoring evaluation
  eval_mc_samp: int = 1  # MC samples of the cheaper monitoring evaluation
  extensions: tuple = ()  # sorted (name, value) pairs of declared options (OPTIONS) it holds

  POSITIVE = ('inner_lr', 'meta_lr', 'grad_clip', 'adam_epsilon', 'lr_step_gamma',
               'noise_scale', 'mixup_alpha')

  def __getattr__(self, name):
    """A declared option (OPTIONS): its value in extensions, else its default."""
    if name.startswith('__') or name == 'extensions':
      raise AttributeError(name)
    values = dict(self.extensions)
    if name in values:
      return values[name]
    if name in OPTIONS:
      return OPTIONS[name].default
    raise AttributeError(f'Config has no setting {name!r}')

  @classmethod
  def make(cls, **values: object) -> 'Config':
    """A Config of fields and declared options (OPTIONS) alike."""
    return cls().replace(**values)

  @property
  def info(self) -> DatasetInfo:
    return DATASETS[self.dataset]

  @property
  def image_shape(self) -> tuple:
    return self.info.image_shape

  @property
  def n_channels(self) -> int:
    return self.channels or self.info.channels

  @property
  def resolved_data_dir(self) -> str:
    return self.data_dir or os.path.join('data', self.dataset)

  @property
  def widths(self) -> tuple:
    """resnet_widths as a tuple of ints (validate() checks the text)."""
    return tuple(int(w) for w in self.resnet_widths.split(','))

  @property
  def learner_name(self) -> str:
    """The learner: --learner, else the reference's choice (--maml: maml, else metadrop)."""
    return self.learner or ('maml' if self.maml else 'metadrop')

  @property
  def noisy(self) -> bool:
    """Whether adaptation samples Meta Dropout's noise (metadrop, or any learner with
    --meta_dropout)."""
    return self.learner_name == 'metadrop' or self.meta_dropout

  @property
  def test_mc_samples(self) -> int:
    """MC samples of the meta-test inner loss; without noise one pass is exact."""
    return self.n_test_mc_samp if self.noisy else 1

  @property
  def method(self) -> str:
    """A short name for logs and results, e.g. 'metasgd+metadrop', 'maml+fixed_mult'."""
    noise = 'metadrop' if self.noise_type == 'metadrop' else self.noise_type
    if self.learner_name == 'metadrop':
      return 'metadrop' if noise == 'metadrop' else f'maml+{noise}'
    mixup = f'+{self.inner_mixup}_mixup' if self.inner_mixup else ''
    return self.learner_name + (f'+{noise}' if self.meta_dropout else '') + mixup

  def split_classes(self) -> dict:
    """Split -> class count of the reference shards, after the optional Omniglot val hold-out."""
    classes = dict(self.info.classes)
    if self.val_characters:
      classes['train'] -= 4 * self.val_characters
      classes['val'] = 4 * self.val_characters
    return classes

  def validate(self) -> 'Config':
    """Raises ConfigError naming the first bad setting; returns self so calls can chain."""
    if self.maml and self.learner not in ('', 'maml'):
      raise ConfigError(f'`maml` contradicts `learner={self.learner}` (`maml` means '
                        '`learner=maml`); pass one of them')
    if self.dataset not in DATASETS:
      raise ConfigError(f'`dataset={self.dataset}` is unknown; choose one of '
                        f'{sorted(DATASETS)}')
    from metadrop_tf import config_checks  # pylint: disable=g-import-not-at-top  # imports this
    for check in (config_checks.numbers, config_checks.network, config_checks.episodes,
                  config_checks.noise, config_checks.splits):
      check(self)
    return self

  def replace(self, **changes: object) -> 'Config':
    """A copy with `changes` to fields or declared options (the latter kept in extensions)."""
    options = {k: changes.pop(k) for k in list(changes) if k in OPTIONS and k not in FIELDS}
    if options:
      changes['extensions'] = tuple(sorted({**dict(self.extensions), **options}.items()))
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    """Every setting by name, the declared options' beside the fields (config.json)."""
    values = {f: getattr(self, f) for f in FIELDS}
    values.update(self.extensions)
    return values

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=1, sort_keys=True)

  @classmethod
  def from_json(cls, text: str, source: str = 'config') -> tuple:
    """Parses JSON written by to_json, including the files of older runs (migration.py);
    returns (Config, [keys that took migration.ADDED_KEYS defaults])."""
    from metadrop_tf import migration  # pylint: disable=g-import-not-at-top  # it imports this
    return migration.from_json(cls, text, source)


# The settings that are fields of Config (extensions holds the others).
FIELDS = tuple(f.name for f in dataclasses.fields(Config) if f.name != 'extensions')


def setting_names() -> tuple:
  """Every setting a Config holds: its fields, then the declared options."""
  return FIELDS + tuple(name for name in OPTIONS if name not in FIELDS)
