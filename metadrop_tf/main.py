"""The three command-line programs: parse flags into a Config, call one library function.

User mistakes (bad flags, missing data, missing or corrupt checkpoints) end in one line on
stderr and exit status 2, never in a TensorFlow traceback.
"""

import os
import signal
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from metadrop_tf import checkpoints
from metadrop_tf import config as config_lib
from metadrop_tf import data
from metadrop_tf import flags as flags_lib
from metadrop_tf import threads

FLAGS = flags.FLAGS
USER_ERRORS = (config_lib.ConfigError, data.DataError, checkpoints.CheckpointError)


def _interrupt(signum, frame):
  del signum, frame
  raise KeyboardInterrupt


def _guarded(main):
  """Runs main(argv), turning user errors and Ctrl-C / SIGTERM into one line and a status.

  Training saves a checkpoint on either signal, and evaluation keeps the episodes it
  finished, so the same command resumes.
  """
  def wrapped(argv):
    signal.signal(signal.SIGTERM, _interrupt)
    if len(argv) > 1:
      sys.exit(f'error: unexpected arguments {argv[1:]} (flags look like --name=value)')
    logging.set_verbosity(logging.INFO)
    try:
      return main()
    except USER_ERRORS as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)
    except KeyboardInterrupt:
      print('interrupted', file=sys.stderr)
      sys.exit(130)
  return wrapped


def _savedir():
  if not FLAGS.savedir:
    raise config_lib.ConfigError('--savedir is required: the run directory')
  return FLAGS.savedir


def train_main():
  from metadrop_tf import train_lib  # pylint: disable=g-import-not-at-top
  savedir = _savedir()
  has_config = os.path.exists(os.path.join(savedir, checkpoints.CONFIG_FILE))
  config = flags_lib.config_from_flags(checkpoints.read_config(savedir) if has_config else None)
  threads.configure(config, training=True)
  checkpoints.write_config(savedir, config)
  with open(os.path.join(savedir, 'flags.cfg'), 'w') as f:
    f.write(''.join(f'--{k}={v}\n' for k, v in sorted(vars(config).items())))
    f.write(f'--savedir={savedir}\n')
  train_lib.train(config, savedir, progress=sys.stderr.isatty())


def evaluate_main():
  from metadrop_tf import eval_lib  # pylint: disable=g-import-not-at-top
  savedir = _savedir()
  config = flags_lib.config_from_flags(checkpoints.read_config(savedir))
  threads.configure(config, training=False)
  result = eval_lib.run(config, savedir, split=FLAGS.split, checkpoint=FLAGS.checkpoint,
                        progress=sys.stderr.isatty())
  logging.info('wrote %s', result['path'])
  print(f"{config.dataset} {config.way}-way {config.shot}-shot "
        f"{'MAML' if config.maml else 'metadrop'} | {FLAGS.split} | step "
        f"{result['checkpoint_step']} | {result['n_episodes']} episodes, "
        f"{result['mc_samples']} MC | accuracy {result['accuracy']:.2f} +- {result['ci95']:.2f} %")


def export_main():
  from metadrop_tf import export_lib  # pylint: disable=g-import-not-at-top
  savedir = _savedir()
  config = flags_lib.config_from_flags(checkpoints.read_config(savedir))
  export_dir = FLAGS.export_dir or os.path.join(savedir, 'export')
  if FLAGS.mode == 'savedmodel':
    export_lib.export_savedmodel(config, savedir, export_dir, FLAGS.checkpoint)
    print(f'wrote SavedModel to {export_dir}')
    return
  path = export_lib.export_visualization(config, savedir,
                                         os.path.join(export_dir, 'visualization.npz'),
                                         FLAGS.checkpoint)
  print(f'wrote {path}')
  try:
    from metadrop_tf import plots  # pylint: disable=g-import-not-at-top
  except ImportError:
    print("plots skipped: install the extra with pip install -e '.[plots]'", file=sys.stderr)
    return
  import numpy as np  # pylint: disable=g-import-not-at-top
  with np.load(path) as dump:
    paths = plots.plot_boundaries(dict(dump), os.path.join(export_dir, 'boundary'))
  model, _ = export_lib.restore_model(config, savedir, FLAGS.checkpoint)
  test = data.load_splits(config, ('test',))['test']
  if not config.maml:
    paths.append(plots.plot_noise(export_lib.noise_maps(model, test[0, :config.way]),
                                  os.path.join(export_dir, 'noise.png')))
  print(f'wrote {len(paths)} plots to {export_dir}')


def define_export_flags():
  flags.DEFINE_enum('mode', 'savedmodel', ['savedmodel', 'visualize'],
                    'savedmodel: adapt-and-predict SavedModel; visualize: the reference dump '
                    'of features per inner step, plus plots when the plots extra is installed.')
  flags.DEFINE_string('export_dir', None, 'Output folder (default <savedir>/export).')
  flags.DEFINE_string('checkpoint', None, 'Checkpoint path (default: the latest of the run).')


def define_evaluate_flags():
  flags.DEFINE_string('split', 'test', 'Split to evaluate on (train, val or test).')
  flags.DEFINE_string('checkpoint', None, 'Checkpoint path (default: the latest of the run).')


def train():
  """Console script `metadrop-train`."""
  flags_lib.define_flags()
  app.run(_guarded(train_main))


def evaluate():
  """Console script `metadrop-evaluate`."""
  flags_lib.define_flags()
  define_evaluate_flags()
  app.run(_guarded(evaluate_main))


def export():
  """Console script `metadrop-export`."""
  flags_lib.define_flags()
  define_export_flags()
  app.run(_guarded(export_main))
