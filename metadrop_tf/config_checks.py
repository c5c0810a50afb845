"""The checks of Config.validate, by theme: each raises ConfigError naming the first bad flag
and what to do. Called in this order; no TF import."""

import math

from metadrop_tf import config as config_lib

ConfigError = config_lib.ConfigError


def numbers(c: config_lib.Config) -> None:
  """Counts, rates, ranges and the choices of the optimizer, schedule and strategy."""
  for name in ('way', 'shot', 'query', 'metabatch', 'n_steps', 'n_train_iters',
               'n_test_iters', 'n_test_mc_samp', 'save_freq', 'keep_checkpoints',
               'log_freq', 'pre_adapt_freq', 'eval_freq', 'eval_batches', 'eval_mc_samp',
               'test_mc_chunks'):
    if getattr(c, name) < 1:
      raise ConfigError(f'`{name}={getattr(c, name)}` must be a positive integer')
  for name, value in c.to_dict().items():  # declared options (config.OPTIONS) included
    if isinstance(value, float) and not math.isfinite(value):
      positive = name in config_lib.Config.POSITIVE
      raise ConfigError(f'`{name}={value}` must be a '
                        f'{"positive " if positive else ""}finite number')
  for name in config_lib.Config.POSITIVE:
    value = getattr(c, name)
    if not value > 0:
      raise ConfigError(f'`{name}={value}` must be a positive finite number')
  for name in ('inner_momentum', 'meta_momentum'):
    if not 0 <= getattr(c, name) < 1:
      raise ConfigError(f'`{name}={getattr(c, name)}` must be in [0, 1)')
  for name in ('inner_weight_decay', 'msl_iters', 'first_order_iters'):
    if getattr(c, name) < 0:
      raise ConfigError(f'`{name}={getattr(c, name)}` must be >= 0 (0: off)')
  config_lib.check_seed(c.seed)
  if c.checkpoint_kept_steps < 0:
    raise ConfigError(f'`checkpoint_kept_steps={c.checkpoint_kept_steps}` must be >= 0 '
                      '(0: recompute every inner step)')
  if c.n_test_mc_samp % c.test_mc_chunks:
    raise ConfigError(f'`test_mc_chunks={c.test_mc_chunks}` must divide '
                      f'`n_test_mc_samp={c.n_test_mc_samp}` (equal chunks)')
  if c.lr_step_iters < 1:
    raise ConfigError(f'`lr_step_iters={c.lr_step_iters}` must be a positive integer')
  for name, choices in (('meta_optimizer', config_lib.META_OPTIMIZERS),
                        ('lr_schedule', config_lib.LR_SCHEDULES),
                        ('strategy', config_lib.STRATEGIES)):
    if getattr(c, name) not in choices:
      raise ConfigError(f'`{name}={getattr(c, name)}` must be one of {list(choices)}')
  if c.lslr and c.learner_name == 'metasgd':
    raise ConfigError('`lslr` (per-step rates) and `learner=metasgd` (per-element rates) are '
                      'two kinds of learned rates; choose one')
  for name in ('intra_op_threads', 'inter_op_threads', 'test_metabatch', 'cpu_devices'):
    if getattr(c, name) < 0:
      raise ConfigError(f'`{name}={getattr(c, name)}` must be >= 0 (0: auto)')


def network(c: config_lib.Config) -> None:
  """The widths, and the regression dataset's settings (whether the backbone is registered
  and fits the dataset's inputs is nets.backbones.check's)."""
  if c.info.objective == 'regression':
    regression(c)
  parts = c.resnet_widths.split(',')
  if len(parts) != 4 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
    raise ConfigError(f'`resnet_widths={c.resnet_widths}` must be four positive '
                      'integers separated by commas, e.g. 64,160,320,640')
  if c.channels < 0:
    raise ConfigError(f'`channels={c.channels}` must be >= 0 (0: dataset default)')


def episodes(c: config_lib.Config) -> None:
  """Way, shot and query for the dataset; precision and noise sampler."""
  if c.way < 2 and c.info.objective == 'classification':
    raise ConfigError(f'`way={c.way}` must be at least 2')
  if c.shot + c.query > c.info.instances:
    raise ConfigError(
        f'`shot={c.shot}` plus `query={c.query}` exceeds the '
        f'{c.info.instances} instances per class of {c.dataset}')
  if c.precision not in config_lib.PRECISIONS:
    raise ConfigError(f'`precision={c.precision}` must be one of {config_lib.PRECISIONS}')
  if c.noise_sampler not in config_lib.NOISE_SAMPLERS:
    raise ConfigError(f'`noise_sampler={c.noise_sampler}` must be one of '
                      f'{config_lib.NOISE_SAMPLERS}')


def noise(c: config_lib.Config) -> None:
  """Noise type, noise penalty, mixup and batch-norm mode, and how they combine (what a
  backbone does not implement, its check_config refuses: nets/backbones.py)."""
  if c.noise_type != 'metadrop':
    if not c.noisy:
      raise ConfigError(f'`noise_type={c.noise_type}` needs a noisy learner: '
                        '`learner=metadrop`, or `meta_dropout` with another gradient learner')
  if c.noise_penalty < 0:
    raise ConfigError(f'`noise_penalty={c.noise_penalty}` must be >= 0')
  if c.inner_mixup and c.noisy:
    raise ConfigError('`inner_mixup` is a baseline for learners without noise; use '
                      '`learner=maml` (or another gradient learner without `meta_dropout`)')


def splits(c: config_lib.Config) -> None:
  """The evaluation split, held-out characters, and way within every split."""
  config_lib.check_split(c.eval_split, c.dataset, c.val_characters, 'eval_split')
  if c.val_characters < 0:
    raise ConfigError(f'`val_characters={c.val_characters}` must be >= 0')
  if c.val_characters and c.dataset != 'omniglot':
    raise ConfigError('`val_characters` applies to omniglot only '
                      '(miniImageNet ships its own val split)')
  for split, n_classes in c.split_classes().items():
    if c.way > n_classes:
      raise ConfigError(f'`way={c.way}` exceeds the {n_classes} classes of the '
                        f'{c.dataset} {split} split')


def regression(c: config_lib.Config) -> None:
  """The settings a regression dataset (sinusoid) cannot take."""
  if c.way != 1:
    raise ConfigError(f'`way={c.way}`: {c.dataset} is regression with one output; '
                      'pass `way=1`')
  for name in ('augment', 'normalize', 'zero_head', 'val_characters'):
    if getattr(c, name):
      raise ConfigError(f'`{name}` applies to image datasets, not `dataset={c.dataset}`')
  if c.bn_mode != 'transductive':
    raise ConfigError(f'`bn_mode={c.bn_mode}`: the {c.backbone} network has no batch '
                      'norm; leave `bn_mode` at transductive')
