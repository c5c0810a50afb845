"""metadrop_tf.files: whole files or nothing."""

import os

import numpy as np
import pytest

from metadrop_tf import files


def test_write_json_replaces_and_leaves_no_temporary_file(tmp_path):
  path = str(tmp_path / 'result.json')
  files.write_json(path, {'a': 1})
  files.write_json(path, {'a': 2})
  with open(path) as f:
    assert f.read() == '{\n "a": 2\n}'
  assert os.listdir(tmp_path) == ['result.json']


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
  path = str(tmp_path / 'config.json')
  files.write_text(path, 'old')
  with pytest.raises(KeyboardInterrupt):
    with files.atomic(path) as tmp:
      with open(tmp, 'w') as f:
        f.write('half of the ne')
      raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of a write
  with open(path) as f:
    assert f.read() == 'old'
  assert os.listdir(tmp_path) == ['config.json']


def test_the_temporary_keeps_the_extension_so_numpy_writes_the_name_it_is_given(tmp_path):
  path = str(tmp_path / 'train.npz')
  with files.atomic(path) as tmp:
    assert tmp.endswith('.npz') and tmp != path
    np.savez_compressed(tmp, images=np.arange(3))
  np.testing.assert_array_equal(np.load(path)['images'], np.arange(3))
  assert os.listdir(tmp_path) == ['train.npz']


def test_uint8_array_is_filled_in_place_and_appears_only_when_full(tmp_path):
  path = str(tmp_path / 'train.npy')
  with files.uint8_array(path, (2, 3)) as out:
    out[0] = 7
    assert not os.path.exists(path)
    out[1] = 9
  np.testing.assert_array_equal(np.load(path), [[7, 7, 7], [9, 9, 9]])
  with pytest.raises(ValueError):
    with files.uint8_array(path, (2, 3)) as out:
      raise ValueError('a missing image')
  np.testing.assert_array_equal(np.load(path), [[7, 7, 7], [9, 9, 9]])
  assert os.listdir(tmp_path) == ['train.npy']
