"""cli/lean_import.py: Keras's optional imports are refused while TensorFlow imports, and import
normally afterwards."""

import subprocess
import sys

import pytest

import helpers
from metadrop_tf.cli import lean_import


def test_a_refused_package_fails_inside_the_block_and_imports_after(tmp_path, monkeypatch):
  package = tmp_path / 'refused_pkg'
  package.mkdir()
  (package / '__init__.py').write_text('')
  (package / 'sub.py').write_text('VALUE = 3\n')
  monkeypatch.syspath_prepend(str(tmp_path))
  with lean_import.refusing(('refused_pkg',)):
    with pytest.raises(ModuleNotFoundError, match='refused_pkg is not imported'):
      import refused_pkg.sub  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    import json  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import  (others import)
  assert 'refused_pkg' not in sys.modules
  import refused_pkg.sub  # pylint: disable=g-import-not-at-top
  assert refused_pkg.sub.VALUE == 3
  monkeypatch.delitem(sys.modules, 'refused_pkg.sub')
  monkeypatch.delitem(sys.modules, 'refused_pkg')


def test_an_imported_package_is_not_refused():
  with lean_import.refusing(('json',)):
    import json  # pylint: disable=g-import-not-at-top
  assert json.dumps(1) == '1'


@pytest.mark.slow
def test_a_program_start_leaves_out_kerass_extras_and_plots_still_import():
  code = ('import sys; from metadrop_tf.cli import quiet; quiet.start(["train.py"]); '
          'import tensorflow as tf; '
          'assert tf.keras.layers.Dense(2)(tf.ones([1, 3])).shape == (1, 2); '
          'print(sorted(n for n in ("matplotlib", "IPython", "sklearn") if n in sys.modules)); '
          'import matplotlib.pyplot, sklearn; print("imported")')
  out = subprocess.run([sys.executable, '-c', code], cwd=helpers.REPO, capture_output=True,
                       text=True, check=True, timeout=300).stdout.split()
  assert out == ['[]', 'imported']
