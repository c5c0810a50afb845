"""TensorFlow imported without the optional packages Keras 3 pulls in for features the programs
never use.

When they are installed, importing TensorFlow makes Keras import matplotlib.pyplot (its image
gallery), IPython (notebook display of saved files) and scikit-learn (its estimator wrappers),
each behind an `except ImportError`. Together they are about a quarter of the CPU time of a
program's start (`python train.py --help`: 6.0-8.1 s instead of 7.7-11.1 s on a loaded AMD EPYC).
`refusing(names)` makes those imports fail for the duration of a block: Keras then goes without
them, and nothing is left in `sys.modules`, so code that needs one later (our plots import
matplotlib) imports it normally. This module imports no TensorFlow.
"""

import contextlib
import importlib.abc
import sys
from typing import Iterator

# Top-level packages Keras imports optionally at `import tensorflow` and the programs never need
# while TensorFlow imports.
KERAS_EXTRAS = ('matplotlib', 'IPython', 'sklearn')


class _Refuse(importlib.abc.MetaPathFinder):
  """A finder that refuses the packages `names` and their submodules."""

  def __init__(self, names: tuple[str, ...]):
    self.names = names

  def find_spec(self, fullname, path=None, target=None):  # the finder protocol's signature
    if fullname.split('.')[0] in self.names:
      raise ModuleNotFoundError(f'{fullname} is not imported during start-up', name=fullname)
    return None


@contextlib.contextmanager
def refusing(names: tuple[str, ...] = KERAS_EXTRAS) -> Iterator[None]:
  """Within the block, importing any of `names` (not yet imported) raises ModuleNotFoundError."""
  finder = _Refuse(tuple(n for n in names if n not in sys.modules))
  sys.meta_path.insert(0, finder)
  try:
    yield
  finally:
    sys.meta_path.remove(finder)
