"""Every absl flag of the three entry points, and their translation into one Config.

Flag names are the reference's (`way`, `shot`, `metabatch`, `n_steps`, `savedir`, ...), so a
reference command line translates word for word. Only the entry points import this module.
"""

from absl import flags

from metadrop_tf import components
from metadrop_tf import config as config_lib
from metadrop_tf import learners

FLAGS = flags.FLAGS
_DEFAULTS = config_lib.Config()

# Settings a resumed or evaluated run may change without contradicting its saved config.
MUTABLE = frozenset({'data_dir', 'n_train_iters', 'gradient_checkpointing',
                     'checkpoint_kept_steps', 'n_test_iters',
                     'n_test_mc_samp', 'test_mc_chunks',
                     'test_metabatch', 'save_freq', 'keep_checkpoints', 'log_freq',
                     'pre_adapt_freq', 'eval_freq', 'eval_split', 'eval_batches', 'eval_mc_samp',
                     'precision', 'noise_sampler', 'intra_op_threads', 'inter_op_threads',
                     'bitwise_reproducible', 'strategy', 'cpu_devices'})

# Where this invocation runs, not what the run computes: taken from the flags on every resume.
PER_INVOCATION = frozenset({'strategy', 'cpu_devices'})

# The --help text of the core settings; a component's options are documented beside its code
# (config.document, components.declare).
_HELP = {
    'dataset': 'omniglot, mimgnet, tiered (tiered-ImageNet), or sinusoid (regression tasks '
               'generated on the fly, no download; implies --way=1 --backbone=mlp).',
    'data_dir': 'Folder with train/test shards (default data/<dataset>).',
    'way': 'N, classes per task.',
    'shot': 'K, support images per class.',
    'query': 'Q, query images per class.',
    'metabatch': 'Tasks per meta-batch.',
    'n_steps': 'Inner SGD steps.',
    'inner_lr': 'Inner learning rate (reference: 0.1 Omniglot 1-shot, 0.4 5-shot, 0.01 mImg).',
    'meta_lr': 'Adam learning rate of the outer loop.',
    'n_train_iters': 'Meta-training iterations (reference: 60000).',
    'n_test_iters': 'Meta-test episodes (reference: 1000).',
    'n_test_mc_samp': 'Monte-Carlo samples of the meta-test inner loss (reference: 30; one pass '
                      'without noise).',
    'test_metabatch': 'Meta-test episodes adapted side by side per call (results do not depend '
                      'on it); 0: auto, up to --metabatch while the estimated memory fits in '
                      'half the RAM (one 20-way 5-shot episode with 30 MC samples takes ~8 GB).',
    'test_mc_chunks': 'Split the meta-test\'s --n_test_mc_samp noise samples into this many '
                      'chunks adapted one after another (memory / this, about; each chunk '
                      'draws its own noise, so results differ from 1 by MC error); 1: the '
                      'reference\'s single pass.',
    'meta_optimizer': 'Outer optimizer: adam or sgd (with --meta_momentum).',
    'meta_momentum': 'Momentum of --meta_optimizer=sgd.',
    'adam_epsilon': 'Epsilon of the outer Adam (the reference: 1e-8; runs made before this flag '
                    'used 1e-7).',
    'lr_schedule': 'Schedule of --meta_lr: constant, cosine (to 0 at --n_train_iters) or step '
                   '(times --lr_step_gamma every --lr_step_iters).',
    'lr_step_iters': 'Iterations between the drops of --lr_schedule=step.',
    'lr_step_gamma': 'Factor of each drop of --lr_schedule=step.',
    'grad_clip': 'Clip every meta-gradient element to [-grad_clip, grad_clip].',
    'precision': 'float32, or bfloat16 convolutions with float32 weights and losses.',
    'noise_sampler': 'N(0, 1) draws of the noise: box_muller (vectorized, 1.7x faster on CPU) '
                     'or tfp (tfp Normal.sample); same distribution, different streams.',
    'intra_op_threads': 'Threads per op; 0: auto (1 in training when the meta-batch has at '
                        'least as many tasks as cores, else one per core).',
    'inter_op_threads': 'Ops run side by side; 0: one per core.',
    'bitwise_reproducible': 'Turn off TensorFlow\'s graph rewrites (grappler), so that two '
                            'processes with the same flags compute bitwise-equal results on '
                            'the same machine and threads; by default they differ in the last '
                            'bits, which meta-training amplifies (docs/reproducing.md).',
    'strategy': 'tf.distribute strategy: auto (multi_worker when TF_CONFIG names a cluster, '
                'else mirrored over the GPUs or --cpu_devices, else one_device), one_device, '
                'mirrored (the devices of this host) or multi_worker (one process per worker, '
                'TF_CONFIG). The meta-batch is split among the replicas; results do not '
                'depend on it (docs/scaling.md).',
    'cpu_devices': 'Split the CPU into this many logical devices, the replicas of '
                   '--strategy=mirrored on a host without GPUs (testing; 0: one device).',
    'seed': 'Seed of initialization, episodes and noise.',
    'augment': 'Augment the training images (meta-test never): random shifts of up to 2 pixels '
               'for Omniglot; random crop (8-pixel padding), horizontal flip and colour jitter '
               'for RGB datasets. Deterministic by --seed and iteration.',
    'normalize': 'Normalize each input channel by the mean and std of the training split '
                 '(<data_dir>/channel_stats.json, written by data/prepare.py or computed once); '
                 'the network holds them, so serving and attacks still take pixels in [0, 1].',
    'val_characters': 'Omniglot: characters held out of meta-train as a val split (0: none).',
    'save_freq': 'Checkpoint every this many iterations.',
    'keep_checkpoints': 'Checkpoints kept.',
    'log_freq': 'Log training averages every this many iterations (reference: 50).',
    'pre_adapt_freq': 'Compute the pre-adaptation query loss/accuracy (monitoring only; a '
                      'forward of every query set, ~15% of a step) every this many iterations.',
    'eval_freq': 'Monitor held-out episodes every this many iterations (reference: 1000).',
    'eval_split': 'Split monitored during training (the reference monitors test).',
    'eval_batches': 'Meta-batches per monitoring evaluation (reference: 50).',
    'eval_mc_samp': 'MC samples of the cheaper monitoring evaluation.',
    'import_modules': 'Comma-separated Python modules to import before the settings are '
                      'checked: learners, backbones or noise types of your own, which register '
                      'themselves (docs/adding.md). Recorded in config.json, so evaluate.py and '
                      'export.py import them again; the current directory is searched too.',
}


def _define(name: str, default, help_text: str) -> None:
  """A flag of the type of `default`."""
  if isinstance(default, bool):
    flags.DEFINE_bool(name, default, help_text)
  elif isinstance(default, int):
    flags.DEFINE_integer(name, default, help_text)
  elif isinstance(default, float):
    flags.DEFINE_float(name, default, help_text)
  else:
    flags.DEFINE_string(name, default, help_text)


def help_text(name: str) -> str:
  """The --help text of the Config field `name`: documented by the component that reads it
  (config.HELP), or a core setting's."""
  return config_lib.HELP.get(name) or _HELP[name]


def define_flags() -> None:
  """Defines one flag per Config field (same name, type and default) plus the run flags."""
  for name in config_lib.FIELDS:
    _define(name, getattr(_DEFAULTS, name), help_text(name))
  flags.DEFINE_string('savedir', None, 'Run directory: config.json, ckpt/, tb/, logs, results.')
  define_option_flags()


def define_option_flags() -> None:
  """Defines a flag for every option components declared (config.OPTIONS) that has none yet:
  called again after --import_modules has imported the user's components. ConfigError if an
  option's name is already another flag's."""
  for name, option in config_lib.OPTIONS.items():
    if name not in FLAGS:
      _define(name, option.default, option.help)
    elif FLAGS[name].help != option.help:
      raise config_lib.ConfigError(f'the option {name!r} a component declares is already the '
                                   f'flag --{name}; rename the option')


def _contradiction(name, value, saved_value, program):
  """The one-line error for a flag that would change a setting of a trained run, with the
  command that does what the user wants."""
  savedir = (FLAGS.savedir or 'RUN').rstrip('/')
  head = f'--{name}={value} contradicts the run in {savedir} ({name}={saved_value})'
  if program != 'train':
    return f'{head}; {program}.py uses the run as trained: leave --{name} out'
  return (f'{head}; to train with it, start another run: python train.py '
          f'--flagfile={savedir}/flags.cfg --{name}={value} --savedir={savedir}_{name}{value}')


def _checked(config):
  """config, validated: its --import_modules imported, then the rules its components declare
  (an option of a component the run does not use names both; learners.check), then the
  Config's own (metadrop_tf.config); holding the options its components read
  (components.recorded)."""
  components.import_modules(config.import_modules)
  learners.check(config)
  return components.recorded(config.validate())


def config_from_flags(saved: config_lib.Config | None = None,
                      mutable: frozenset | None = MUTABLE,
                      program: str = 'train') -> config_lib.Config:
  """The Config of this invocation, validated.

  Without `saved`: every flag. With the run's saved Config: it, overridden by the flags given
  explicitly; overriding a setting outside `mutable` (None: no limit) with a different value
  is an error. PER_INVOCATION settings (where this process runs) always come from the flags:
  a run trained on two workers resumes in one process without saying so.
  """
  names = [n for n in config_lib.setting_names() if n in FLAGS]  # options of modules not
  # imported by this process have no flag
  if saved is None:
    values = {name: FLAGS[name].value for name in names}
    for name, value in config_lib.DATASET_DEFAULTS.get(values['dataset'], {}).items():
      if not FLAGS[name].present:  # e.g. --dataset=sinusoid: --way=1, --backbone=mlp
        values[name] = value
    return _checked(config_lib.Config.make(**values))
  changes = {}
  if mutable is not None and saved.zero_head:  # the head is made per task: any way works
    mutable = mutable | {'way'}
  for name in names:
    flag, saved_value = FLAGS[name], getattr(saved, name)
    if name in PER_INVOCATION and flag.value != saved_value:
      changes[name] = flag.value
    elif flag.present and flag.value != saved_value:
      if mutable is not None and name not in mutable:
        raise config_lib.ConfigError(_contradiction(name, flag.value, saved_value, program))
      changes[name] = flag.value
  return _checked(saved.replace(**changes))
