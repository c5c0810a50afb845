"""The serving program: flags -> loaded models -> uvicorn (metadrop_tf.export.serving)."""

import logging
import os
import sys
from typing import Sequence

from absl import app
from absl import flags

from metadrop_tf.cli import help as help_lib
from metadrop_tf.cli import messages
from metadrop_tf.cli import quiet

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_list('export_dir', None, 'SavedModel folders to serve (comma-separated); each '
                    'holds saved_model.pb or numbered version folders (the newest is served).')
  flags.DEFINE_list('model_name', [], 'Names to serve them under; empty: the folder names.')
  flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on (0.0.0.0: every interface).')
  flags.DEFINE_integer('port', 8501, 'Port (TF Serving\'s REST port is 8501).')
  flags.DEFINE_integer('max_body_bytes', 16 << 20, 'Largest request body accepted (413 above).')


def main(argv: Sequence[str]) -> None:
  """Checks the serve extra and the flags, then (only then) starts TensorFlow and loads."""
  try:
    import starlette  # pylint: disable=g-import-not-at-top,unused-import  # noqa: F401
    import uvicorn  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    if e.name not in ('uvicorn', 'starlette'):
      raise
    _fail(f"serving needs {e.name}, of the serve extra: pip install -e '.[serve]'")
  if len(argv) > 1:
    _fail(f'unexpected arguments {argv[1:]} (flags look like --name=value)')
  if not FLAGS.export_dir:
    _fail('--export_dir is required: a folder written by export.py')
  names = FLAGS.model_name or [os.path.basename(os.path.normpath(d)) for d in FLAGS.export_dir]
  if len(names) != len(FLAGS.export_dir) or len(set(names)) != len(names):
    _fail('--model_name needs one distinct name per --export_dir')
  quiet.start()
  from metadrop_tf.export import serving  # pylint: disable=g-import-not-at-top
  from metadrop_tf.export import serving_app  # pylint: disable=g-import-not-at-top
  models = {}
  for name, export_dir in zip(names, FLAGS.export_dir):
    try:
      models[name] = serving.load(export_dir, name)
    except ValueError as e:
      _fail(messages.as_flags(str(e)))
  logging.basicConfig(level=logging.INFO, format='%(message)s')
  for model in models.values():
    print(f'serving {model.name} version {model.version} ({", ".join(model.signatures)}) at '
          f'http://{FLAGS.host}:{FLAGS.port}/v1/models/{model.name}', flush=True)
  uvicorn.run(serving_app.make_app(models, FLAGS.max_body_bytes), host=FLAGS.host, port=FLAGS.port,
              log_level='warning', timeout_graceful_shutdown=30)


def _fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def run() -> None:
  define_flags()
  if help_lib.asks_for_help(sys.argv):
    own = [f.name for f in FLAGS.get_flags_for_module(__name__)]  # those of define_flags
    help_lib.show(help_lib.program_help('serve', sys.modules['__main__'].__doc__, own, []))
    sys.exit(0)
  try:
    FLAGS(sys.argv)
  except flags.Error as e:
    _fail(messages.parse_error(e))
  FLAGS.unparse_flags()
  app.run(main)
