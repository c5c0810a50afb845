"""The three command-line programs: parse flags into a Config, call one library function.

User mistakes and faults (bad flags, missing or damaged data, run directories and checkpoints,
a diverged run) end in one line on stderr and a non-zero exit status (errors.UserError), never
in a TensorFlow traceback. `--help` lists the program's own flags and exits 0.
"""

import logging as std_logging
import math
import os
import signal
import sys
from typing import Sequence

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from metadrop_tf import components
from metadrop_tf import config as config_lib
from metadrop_tf import errors
from metadrop_tf import objectives
from metadrop_tf.cli import flags as flags_lib
from metadrop_tf.cli import help as help_lib
from metadrop_tf.cli import messages
from metadrop_tf.cli import program_flags
from metadrop_tf.cli import quiet
from metadrop_tf.episodes import data
from metadrop_tf.runtime import checkpoints
from metadrop_tf.runtime import distribute
from metadrop_tf.runtime import rewrites
from metadrop_tf.runtime import threads

FLAGS = flags.FLAGS


def _interrupt(signum, frame):
  del signum, frame
  raise KeyboardInterrupt


def _guarded(main):
  """Runs main(), turning user errors and Ctrl-C / SIGTERM into one line and a status.

  Training saves a checkpoint on either signal, and evaluation keeps the episodes it
  finished, so the same command resumes.
  """
  def wrapped(argv):
    signal.signal(signal.SIGTERM, _interrupt)
    logging.set_verbosity(logging.INFO)
    logging.get_absl_logger().addFilter(messages.FLAG_WORDING)
    if not quiet.verbose_requested(sys.argv):
      logging.get_absl_handler().setFormatter(std_logging.Formatter('%(message)s'))
      logging.get_absl_logger().addFilter(messages.DROP_TF_LINES)
      std_logging.getLogger('tensorflow').setLevel(std_logging.WARNING)
    try:
      if len(argv) > 1:
        raise config_lib.ConfigError(f'unexpected arguments {argv[1:]} (flags look like '
                                     '--name=value)')
      return main()
    except errors.UserError as e:
      print(f'error: {messages.as_flags(str(e))}', file=sys.stderr)
      sys.exit(e.exit_code)
    except KeyboardInterrupt:
      print('interrupted', file=sys.stderr)
      sys.exit(130)
  return wrapped


def _directory(flag: str, path: str) -> str:
  """path, unless something other than a directory is there (ConfigError naming the flag)."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise config_lib.ConfigError(f'--{flag}={path} is a file, not a directory; pass a '
                                 'directory path')
  return path


def _savedir() -> str:
  if not FLAGS.savedir:
    raise config_lib.ConfigError('--savedir is required: the run directory')
  return _directory('savedir', FLAGS.savedir)


def _saved_config(savedir):
  """(saved Config or None, the settings the flags may change): a run with no checkpoint on
  disk has trained nothing, so its flags may change every setting."""
  if not os.path.exists(os.path.join(savedir, checkpoints.CONFIG_FILE)):
    return None, flags_lib.MUTABLE
  saved = checkpoints.read_config(savedir)
  if checkpoints.checkpoints_on_disk(os.path.join(savedir, checkpoints.CKPT_DIR)):
    return saved, flags_lib.MUTABLE
  return saved, None  # None: everything


def _describe():
  """--describe: the network of the flags, its parameters counted; trains nothing."""
  from metadrop_tf.nets import backbones  # pylint: disable=g-import-not-at-top
  from metadrop_tf.nets import network as network_lib  # pylint: disable=g-import-not-at-top
  config = flags_lib.config_from_flags()
  network = backbones.build(config)
  own = sorted(components.REGISTRY[('backbone', config.backbone)].options)  # e.g. its widths
  options = ''.join(f' --{o}={getattr(config, o)}' for o in own)
  print(f'{config.backbone}{options}, {config.dataset} {config.image_shape} '
        f'{config.way}-way, {config.method}')
  print(network_lib.describe(network))


def _strategy(config, training):
  """Thread pools, graph rewrites, logical devices and the tf.distribute strategy, before any
  TF op runs."""
  threads.configure(config, training=training)
  rewrites.configure(config)
  distribute.configure_devices(config)
  strategy = distribute.make_strategy(config)
  # A multi-worker strategy starts TF's coordination service, whose preemption notifier takes
  # over SIGTERM in C++: take it back (training and evaluation then hand it to TF's
  # preemption handler).
  signal.signal(signal.SIGTERM, _interrupt)
  return strategy


def train_main() -> None:
  from metadrop_tf.train import train_lib  # pylint: disable=g-import-not-at-top
  if FLAGS.describe:
    return _describe()
  savedir = _savedir()
  saved, mutable = _saved_config(savedir)
  config = flags_lib.config_from_flags(saved, mutable)
  _directory('data_dir', config.resolved_data_dir)
  strategy = _strategy(config, training=True)
  train_lib.train(config, savedir, progress=sys.stderr.isatty(), strategy=strategy)


def evaluate_main() -> None:
  from metadrop_tf.evaluation import eval_lib  # pylint: disable=g-import-not-at-top
  savedir = _savedir()
  config = flags_lib.config_from_flags(checkpoints.read_config(savedir), program='evaluate')
  config_lib.check_split(FLAGS.split, config.dataset, config.val_characters)
  if FLAGS.episode_seed is not None:
    config_lib.check_seed(FLAGS.episode_seed, 'episode_seed')
  attack = _attack_from_flags()
  objective = objectives.for_config(config)
  if attack and objective is not objectives.CLASSIFICATION:
    raise config_lib.ConfigError(f'--attack scores classification accuracy; {config.dataset} '
                                 f'is {objective.name}')
  strategy = _strategy(config, training=False)
  result = eval_lib.run(config, savedir, split=FLAGS.split, checkpoint=FLAGS.checkpoint,
                        progress=sys.stderr.isatty(), attack=attack, strategy=strategy,
                        overwrite=FLAGS.overwrite, seed=FLAGS.episode_seed)
  if not distribute.is_chief(strategy):
    return
  logging.info('wrote %s', result['path'])
  task = (f'{config.shot}-shot' if objective.name == 'regression' else
          f'{config.way}-way {config.shot}-shot')
  head = (f"{config.dataset} {task} "
          f"{'MAML' if config.method == 'maml' else config.method} | {FLAGS.split} | iteration "
          f"{result['checkpoint_step']} | {result['n_episodes']} "
          f"{'tasks' if objective.name == 'regression' else 'episodes'}, "
          f"{result['mc_samples']} MC" + ('' if FLAGS.episode_seed is None else
                                            f", episode seed {result['seed']}"))
  print(f'{head} | {objective.describe(result[objective.result], result["ci95"])}')
  if objective.name == 'regression':
    print(f"{head} | before adaptation | {objective.result} "
          f"{result[objective.result + '_pre']:.4g}")
  for row in result.get('attacked', []):
    print(f"{head} | PGD {attack.norm} eps {row['eps']:g} | accuracy {row['accuracy']:.2f} +- "
          f"{row['ci95']:.2f} %")


def _attack_from_flags():
  """The attacks.Attack of --attack=pgd and its flags, or None; ConfigError naming the flag."""
  from metadrop_tf.evaluation import attacks  # pylint: disable=g-import-not-at-top
  if not FLAGS.attack:
    return None
  if FLAGS.attack_norm not in attacks.NORMS:
    raise config_lib.ConfigError(f'--attack_norm={FLAGS.attack_norm!r} must be one of '
                                 f'{list(attacks.NORMS)}')
  try:
    eps = tuple(float(e) for e in FLAGS.attack_eps.split(','))
  except ValueError:
    raise config_lib.ConfigError(f'--attack_eps={FLAGS.attack_eps!r} must be numbers '
                                 'separated by commas, e.g. 0.01,0.03') from None
  if not all(math.isfinite(e) and e > 0 for e in eps):
    raise config_lib.ConfigError(f'--attack_eps={FLAGS.attack_eps} must be positive and finite')
  if FLAGS.attack_steps < 1:
    raise config_lib.ConfigError(f'--attack_steps={FLAGS.attack_steps} must be >= 1')
  if not (math.isfinite(FLAGS.attack_step_size) and FLAGS.attack_step_size >= 0):
    raise config_lib.ConfigError(f'--attack_step_size={FLAGS.attack_step_size} must be >= 0 '
                                 '(0: 2.5 eps / steps)')
  if not 0 < FLAGS.attack_l1_sparsity <= 1:
    raise config_lib.ConfigError(f'--attack_l1_sparsity={FLAGS.attack_l1_sparsity} must be '
                                 'in (0, 1]')
  return attacks.Attack(FLAGS.attack_norm, eps, FLAGS.attack_steps, FLAGS.attack_step_size,
                        FLAGS.attack_random_start, FLAGS.attack_l1_sparsity)


def export_main() -> None:
  from metadrop_tf.export import export_lib  # pylint: disable=g-import-not-at-top
  from metadrop_tf.export import visualization  # pylint: disable=g-import-not-at-top
  savedir = _savedir()
  config = flags_lib.config_from_flags(checkpoints.read_config(savedir), program='export')
  default = 'export' if FLAGS.mode == 'savedmodel' else 'visualization'
  export_dir = _directory('export_dir', FLAGS.export_dir or os.path.join(savedir, default))
  if FLAGS.mode == 'savedmodel':
    export_lib.export_savedmodel(config, savedir, export_dir, FLAGS.checkpoint,
                                 overwrite=FLAGS.overwrite)
    print(f'wrote SavedModel to {export_dir}')
    return
  path = visualization.export_visualization(config, savedir,
                                         os.path.join(export_dir, 'visualization.npz'),
                                         FLAGS.checkpoint)
  print(f'wrote {path}')
  try:
    from metadrop_tf.export import plots  # pylint: disable=g-import-not-at-top
  except ImportError:
    print("plots skipped: install the extra with pip install -e '.[plots]'", file=sys.stderr)
    return
  import numpy as np  # pylint: disable=g-import-not-at-top
  if objectives.for_config(config).name == 'regression':
    with np.load(path) as dump:
      figure = plots.plot_regression(dict(dump), os.path.join(export_dir, 'curves.png'),
                                     f'{config.method}, {config.shot} shots')
    print(f'wrote {figure}')
    return
  with np.load(path) as dump:
    paths = plots.plot_boundaries(dict(dump), os.path.join(export_dir, 'boundary'))
  learner, _ = export_lib.restore_learner(config, savedir, FLAGS.checkpoint)
  test = data.load_splits(config, ('test',))['test']
  if learner.noisy:
    paths.append(plots.plot_noise(visualization.noise_maps(learner.network, test[0, :config.way]),
                                  os.path.join(export_dir, 'noise.png')))
  print(f'wrote {len(paths)} plots to {export_dir}')


PROGRAMS = {'train': train_main, 'evaluate': evaluate_main, 'export': export_main}


def define_program_flags(program: str) -> None:
  if 'seed' not in FLAGS:
    flags_lib.define_flags()
  program_flags.define(program)


def print_help(program: str, doc: str = '', argv: Sequence[str] = ()) -> None:
  """This program's own flags, then the run settings by component (absl's --help shows only
  absl's); --learner=X among argv narrows the learner options to X's."""
  own = ['savedir'] + program_flags.OWN_FLAGS[program]
  help_lib.show(help_lib.program_help(program, doc, own, list(argv)))


def _import_user_components(argv) -> None:
  """Imports the modules --import_modules names (on the command line or in a --flagfile), so
  the options their components declare are flags before the command line is parsed."""
  try:
    FLAGS([a for a in argv if a not in help_lib.HELP_ARGS], known_only=True)  # the rest: below
    names = FLAGS.import_modules
  except flags.Error:
    return  # the full parse reports it
  finally:
    FLAGS.unparse_flags()
  components.import_modules(names)
  flags_lib.define_option_flags()


def run(program: str, argv: Sequence[str] | None = None) -> None:
  """Entry point of a program ('train', 'evaluate', 'export'): flags, then the guarded main."""
  argv = list(sys.argv if argv is None else argv)
  define_program_flags(program)
  try:
    _import_user_components(argv)
  except config_lib.ConfigError as e:
    print(f'error: {messages.as_flags(str(e))}', file=sys.stderr)
    sys.exit(2)
  if help_lib.asks_for_help(argv):
    print_help(program, sys.modules['__main__'].__doc__, argv[1:])
    sys.exit(0)
  try:
    FLAGS(argv, known_only=False)
  except flags.Error as e:
    print(f'error: {messages.parse_error(e)}', file=sys.stderr)
    sys.exit(2)
  FLAGS.unparse_flags()
  app.run(_guarded(PROGRAMS[program]), argv=argv)


def train() -> None:
  """Console script `metadrop-train`."""
  run('train')


def evaluate() -> None:
  """Console script `metadrop-evaluate`."""
  run('evaluate')


def export() -> None:
  """Console script `metadrop-export`."""
  run('export')
