"""runtime/ckpt_files.py: checkpoint files found by name; no TensorFlow import."""

import subprocess
import sys

import helpers
from metadrop_tf.runtime import ckpt_files


def test_files_are_grouped_by_iteration_and_missing_shards_named(tmp_path):
  for name in ('ckpt-4.index', 'ckpt-4.data-00000-of-00002', 'ckpt-10.index', 'checkpoint',
               'ckpt-x.index', 'other-3.index'):
    (tmp_path / name).write_text('')
  found = ckpt_files.checkpoints_on_disk(str(tmp_path))
  assert sorted(found) == [4, 10]
  assert sorted(found[4]) == ['ckpt-4.data-00000-of-00002', 'ckpt-4.index']
  assert ckpt_files.missing_files(str(tmp_path / 'ckpt-4'), found[4]) == [
      'ckpt-4.data-00001-of-00002']
  assert ckpt_files.missing_files('ckpt-10', found[10]) == ['ckpt-10.data-00000-of-00001']
  assert ckpt_files.checkpoints_on_disk(str(tmp_path / 'absent')) == {}


def test_importing_it_does_not_import_tensorflow():
  code = ('import sys; from metadrop_tf.runtime import ckpt_files; '
          'print("tensorflow" in sys.modules)')
  out = subprocess.run([sys.executable, '-c', code], cwd=helpers.REPO, capture_output=True,
                       text=True, check=True).stdout
  assert out.strip() == 'False'
