"""The one frozen configuration of a run: defaults, validation, JSON round trip. No TF import."""

import dataclasses
import json
import math
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
  generated: bool = False  # tasks are generated (metadrop_tf.sinusoid), no shards to load
  backbone: str = 'conv4'  # the network --backbone defaults to for this dataset


DATASETS = {
    'omniglot': DatasetInfo((28, 28, 1), 64, 20, {'train': 4800, 'test': 1692}),
    'mimgnet': DatasetInfo((84, 84, 3), 32, 600,
                           {'train': 64, 'val': 16, 'test': 20}),
    # Classes of 732 to 1300 images: instances is the smallest class (data.RaggedShard).
    'tiered': DatasetInfo((84, 84, 3), 32, 732, {'train': 351, 'val': 97, 'test': 160}),
    # Finn et al. (2017): y = A sin(x - p) on x in [-5, 5]; an MLP of 2 x 40 hidden units.
    'sinusoid': DatasetInfo((1,), 40, 10 ** 6, {'train': 1, 'val': 1, 'test': 1},
                            objective='regression', generated=True, backbone='mlp'),
}
# Flags whose default depends on --dataset when not given explicitly (metadrop_tf.flags).
DATASET_DEFAULTS = {'sinusoid': {'way': 1, 'backbone': 'mlp'}}
PRECISIONS = ('float32', 'bfloat16')
NOISE_SAMPLERS = ('box_muller', 'tfp')  # metadrop_tf.layers.SAMPLERS
BN_MODES = ('transductive', 'inductive', 'per_step', 'running')
EVAL_SPLITS = ('train', 'val', 'test')


# Keys added after runs were committed, with the value that reproduces those runs: a saved
# config.json without one loads with this value (logged); any other missing key is an error.
ADDED_KEYS = {
    'test_metabatch': 0, 'learner': '', 'meta_dropout': False, 'adapt_params': '',
    'inner_momentum': 0.0, 'inner_weight_decay': 0.0, 'zero_head': False, 'lslr': False,
    'msl_iters': 0, 'first_order_iters': 0, 'meta_optimizer': 'adam', 'meta_momentum': 0.9,
    'lr_schedule': 'constant', 'lr_step_iters': 10000, 'lr_step_gamma': 0.5,
    'adam_epsilon': 1e-7,  # Keras' default, which the runs made before this key used
    'gradient_checkpointing': False, 'strategy': 'auto', 'cpu_devices': 0,
    'backbone': 'conv4', 'resnet_widths': '64,160,320,640', 'augment': False,
    'normalize': False, 'noise_type': 'metadrop', 'noise_scale': 0.5, 'inner_mixup': '',
    'mixup_alpha': 2.0, 'noise_penalty': 0.01, 'test_mc_chunks': 1,
    'checkpoint_kept_steps': 0, 'import_modules': '',
}
MIXUP_KINDS = ('', 'input', 'manifold')  # learners.mixup.KINDS
NOISE_TYPES = ('metadrop', 'learned_add', 'info_dropout', 'vib', 'fixed_mult',
               'fixed_add')  # layers.make_noise
META_OPTIMIZERS = ('adam', 'sgd')
LR_SCHEDULES = ('constant', 'cosine', 'step')
BACKBONES = ('conv4', 'resnet12', 'mlp')  # model.py, resnet.py, mlp.py
STRATEGIES = ('auto', 'one_device', 'mirrored', 'multi_worker')  # metadrop_tf.distribute


class ConfigError(errors.UserError, ValueError):
  """A bad setting; the message is one line that names the flag."""


def check_split(split: str, dataset: str, val_characters: int, flag: str = '--split') -> None:
  """Raises ConfigError unless `split` can be evaluated for this dataset."""
  if split not in EVAL_SPLITS:
    raise ConfigError(f'{flag}={split!r} is not a split; choose one of {list(EVAL_SPLITS)}')
  if split == 'val' and dataset == 'omniglot' and not val_characters:
    raise ConfigError(f'{flag}=val: Omniglot has no val shard; its val split is held out of '
                      'train with --val_characters=N at training time, and this run has none')


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
  intra_op_threads: int = 0  # 0: auto (metadrop_tf.threads)
  inter_op_threads: int = 0  # 0: TF's default
  strategy: str = 'auto'  # tf.distribute strategy (metadrop_tf.distribute); results do not
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

  _POSITIVE = ('inner_lr', 'meta_lr', 'grad_clip', 'adam_epsilon', 'lr_step_gamma',
               'noise_scale', 'mixup_alpha')

  @property
  def info(self) -> DatasetInfo:
    return DATASETS[self.dataset]

  @property
  def image_shape(self):
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
    """Raises ConfigError naming the first bad flag; returns self so calls can chain."""
    if self.maml and self.learner not in ('', 'maml'):
      raise ConfigError(f'--maml contradicts --learner={self.learner} (--maml means '
                        '--learner=maml); pass one of them')
    if self.dataset not in DATASETS:
      raise ConfigError(f'--dataset={self.dataset!r} is unknown; choose one of '
                        f'{sorted(DATASETS)}')
    for name in ('way', 'shot', 'query', 'metabatch', 'n_steps', 'n_train_iters',
                 'n_test_iters', 'n_test_mc_samp', 'save_freq', 'keep_checkpoints',
                 'log_freq', 'pre_adapt_freq', 'eval_freq', 'eval_batches', 'eval_mc_samp',
                 'test_mc_chunks'):
      if getattr(self, name) < 1:
        raise ConfigError(f'--{name}={getattr(self, name)} must be a positive integer')
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.type is float and not math.isfinite(value):
        positive = field.name in self._POSITIVE
        raise ConfigError(f'--{field.name}={value} must be a '
                          f'{"positive " if positive else ""}finite number')
    for name in self._POSITIVE:
      value = getattr(self, name)
      if not value > 0:
        raise ConfigError(f'--{name}={value} must be a positive finite number')
    for name in ('inner_momentum', 'meta_momentum'):
      if not 0 <= getattr(self, name) < 1:
        raise ConfigError(f'--{name}={getattr(self, name)} must be in [0, 1)')
    for name in ('inner_weight_decay', 'msl_iters', 'first_order_iters'):
      if getattr(self, name) < 0:
        raise ConfigError(f'--{name}={getattr(self, name)} must be >= 0 (0: off)')
    if self.checkpoint_kept_steps < 0:
      raise ConfigError(f'--checkpoint_kept_steps={self.checkpoint_kept_steps} must be >= 0 '
                        '(0: recompute every inner step)')
    if self.n_test_mc_samp % self.test_mc_chunks:
      raise ConfigError(f'--test_mc_chunks={self.test_mc_chunks} must divide '
                        f'--n_test_mc_samp={self.n_test_mc_samp} (equal chunks)')
    if self.lr_step_iters < 1:
      raise ConfigError(f'--lr_step_iters={self.lr_step_iters} must be a positive integer')
    for name, choices in (('meta_optimizer', META_OPTIMIZERS), ('lr_schedule', LR_SCHEDULES),
                          ('strategy', STRATEGIES)):
      if getattr(self, name) not in choices:
        raise ConfigError(f'--{name}={getattr(self, name)!r} must be one of {list(choices)}')
    if self.lslr and self.learner_name == 'metasgd':
      raise ConfigError('--lslr (per-step rates) and --learner=metasgd (per-element rates) are '
                        'two kinds of learned rates; choose one')
    for name in ('intra_op_threads', 'inter_op_threads', 'test_metabatch', 'cpu_devices'):
      if getattr(self, name) < 0:
        raise ConfigError(f'--{name}={getattr(self, name)} must be >= 0 (0: auto)')
    if self.backbone not in BACKBONES:
      raise ConfigError(f'--backbone={self.backbone!r} must be one of {list(BACKBONES)}')
    if (self.backbone == 'mlp') != (self.info.backbone == 'mlp'):
      kind = 'numbers' if self.backbone == 'mlp' else 'images'
      raise ConfigError(f'--backbone={self.backbone} does not fit --dataset={self.dataset} '
                        f'(its inputs are not {kind}); use --backbone={self.info.backbone}')
    if self.info.objective == 'regression':
      self._validate_regression()
    parts = self.resnet_widths.split(',')
    if len(parts) != 4 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
      raise ConfigError(f'--resnet_widths={self.resnet_widths!r} must be four positive '
                        'integers separated by commas, e.g. 64,160,320,640')
    if self.channels and self.backbone == 'resnet12':
      raise ConfigError('--channels is the width of conv-4; --backbone=resnet12 takes '
                        '--resnet_widths')
    if self.channels < 0:
      raise ConfigError(f'--channels={self.channels} must be >= 0 (0: dataset default)')
    if self.way < 2 and self.info.objective == 'classification':
      raise ConfigError(f'--way={self.way} must be at least 2')
    if self.shot + self.query > self.info.instances:
      raise ConfigError(
          f'--shot={self.shot} plus --query={self.query} exceeds the '
          f'{self.info.instances} instances per class of {self.dataset}')
    if self.precision not in PRECISIONS:
      raise ConfigError(f'--precision={self.precision!r} must be one of {PRECISIONS}')
    if self.noise_sampler not in NOISE_SAMPLERS:
      raise ConfigError(f'--noise_sampler={self.noise_sampler!r} must be one of '
                        f'{NOISE_SAMPLERS}')
    if self.noise_type not in NOISE_TYPES:
      raise ConfigError(f'--noise_type={self.noise_type!r} must be one of {list(NOISE_TYPES)}')
    if self.noise_type != 'metadrop':
      if not self.noisy:
        raise ConfigError(f'--noise_type={self.noise_type} needs a noisy learner: '
                          '--learner=metadrop, or --meta_dropout with another gradient learner')
      if self.backbone == 'resnet12':
        raise ConfigError(f'--noise_type={self.noise_type} is built for conv4 and mlp; '
                          'ResNet-12 has Meta Dropout\'s noise only')
      if self.noise_type in ('info_dropout', 'vib') and self.backbone != 'conv4':
        raise ConfigError(f'--noise_type={self.noise_type} is built for --backbone=conv4')
    if self.noise_penalty < 0:
      raise ConfigError(f'--noise_penalty={self.noise_penalty} must be >= 0')
    if self.inner_mixup not in MIXUP_KINDS:
      raise ConfigError(f'--inner_mixup={self.inner_mixup!r} must be one of '
                        f'{list(MIXUP_KINDS)} (empty: off)')
    if self.inner_mixup and self.backbone == 'resnet12':
      raise ConfigError('--inner_mixup is built for conv4 and mlp, not --backbone=resnet12')
    if self.inner_mixup and self.noisy:
      raise ConfigError('--inner_mixup is a baseline for learners without noise; use '
                        '--learner=maml (or another gradient learner without --meta_dropout)')
    if self.bn_mode not in BN_MODES:
      raise ConfigError(f'--bn_mode={self.bn_mode!r} must be one of {BN_MODES}')
    check_split(self.eval_split, self.dataset, self.val_characters, '--eval_split')
    if self.val_characters < 0:
      raise ConfigError(f'--val_characters={self.val_characters} must be >= 0')
    if self.val_characters and self.dataset != 'omniglot':
      raise ConfigError('--val_characters applies to omniglot only '
                        '(miniImageNet ships its own val split)')
    for split, n_classes in self.split_classes().items():
      if self.way > n_classes:
        raise ConfigError(f'--way={self.way} exceeds the {n_classes} classes of the '
                          f'{self.dataset} {split} split')
    return self

  def _validate_regression(self) -> None:
    """The settings a regression dataset (sinusoid) cannot take."""
    if self.way != 1:
      raise ConfigError(f'--way={self.way}: {self.dataset} is regression with one output; '
                        'pass --way=1')
    for name in ('augment', 'normalize', 'zero_head', 'val_characters'):
      if getattr(self, name):
        raise ConfigError(f'--{name} applies to image datasets, not --dataset={self.dataset}')
    if self.bn_mode != 'transductive':
      raise ConfigError(f'--bn_mode={self.bn_mode}: the {self.backbone} network has no batch '
                        'norm; leave --bn_mode at transductive')

  def replace(self, **changes) -> 'Config':
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=1, sort_keys=True)

  @classmethod
  def from_json(cls, text: str, source: str = 'config') -> tuple:
    """Parses JSON written by to_json; returns (Config, [keys that took ADDED_KEYS defaults]).

    Every error is one line naming `source` and the key: invalid JSON, unknown or missing
    keys, a value of the wrong type (an int where a bool belongs, a string for a number,
    null, a non-finite number). The values are not validated here (see validate()).
    """
    try:
      values = json.loads(text)
    except json.JSONDecodeError as e:
      raise ConfigError(f'{source} is not valid JSON: {e}; fix it or delete the run '
                        'directory') from None
    if not isinstance(values, dict):
      raise ConfigError(f'{source} holds a JSON {type(values).__name__}, not an object of '
                        'settings')
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
      raise ConfigError(f'{source} has unknown keys {unknown}')
    missing = sorted(set(fields) - set(values) - set(ADDED_KEYS))
    if missing:
      raise ConfigError(f'{source} lacks the keys {missing}; restore the file (flags.cfg '
                        'beside it lists the same settings)')
    added = sorted(k for k in ADDED_KEYS if k in fields and k not in values)
    parsed = {k: ADDED_KEYS[k] for k in added}
    for key, value in values.items():
      parsed[key] = _typed(key, value, fields[key].type, source)
    return cls(**parsed), added


def _typed(key, value, kind, source):
  """value as `kind` (bool, int, float or str), or ConfigError naming the key."""
  if kind is float and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
  if ok and kind is float and not math.isfinite(value):
    ok = False
  if not ok:
    expected = 'a finite number' if kind is float else {
        bool: 'true or false', int: 'an integer', str: 'a string'}[kind]
    raise ConfigError(f'{source}: "{key}" is {json.dumps(value)}; expected {expected}')
  return value
