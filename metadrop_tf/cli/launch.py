"""The programs' entry points: a quiet TensorFlow start-up (quiet.py), then the program (main.py).

Nothing here imports TensorFlow before `quiet.start()` has run.
"""

from metadrop_tf.cli import quiet


def _run(program: str) -> None:
  quiet.start()
  from metadrop_tf.cli import main  # pylint: disable=g-import-not-at-top
  main.run(program)


def serve() -> None:
  """Console script `metadrop-serve` and `serve.py`. Its flags and checks need no TensorFlow,
  so `--help` and a missing serve extra answer at once; serve_main starts TF when loading."""
  from metadrop_tf.cli import serve_main  # pylint: disable=g-import-not-at-top
  serve_main.run()


def train() -> None:
  """Console script `metadrop-train` and `train.py`."""
  _run('train')


def evaluate() -> None:
  """Console script `metadrop-evaluate` and `evaluate.py`."""
  _run('evaluate')


def export() -> None:
  """Console script `metadrop-export` and `export.py`."""
  _run('export')
