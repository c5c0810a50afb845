"""Tests of the run directory: config round trip and one-line checkpoint errors."""

import os

import pytest
import tensorflow as tf

import helpers
from metadrop_tf import config as config_lib
from metadrop_tf import learners
from metadrop_tf.runtime import checkpoints


def test_config_round_trip(tmp_path):
  config = helpers.tiny_config('somewhere', maml=True)
  checkpoints.write_config(str(tmp_path), config)
  assert checkpoints.read_config(str(tmp_path)) == config


def test_missing_config_and_bad_json_name_the_file(tmp_path):
  with pytest.raises(checkpoints.CheckpointError, match='config.json not found'):
    checkpoints.read_config(str(tmp_path))
  (tmp_path / 'config.json').write_text('{"way": ')
  with pytest.raises(config_lib.ConfigError, match='config.json is not valid JSON'):
    checkpoints.read_config(str(tmp_path))


def _saved_run(tmp_path, **changes):
  config = helpers.tiny_config(**changes)
  model = learners.build(config)
  ckpt = checkpoints.make_checkpoint(model)
  ckpt.step.assign(7)
  path = checkpoints.make_manager(ckpt, str(tmp_path)).save(checkpoint_number=7)
  return config, path


def test_restore_round_trip_and_missing(tmp_path):
  config, path = _saved_run(tmp_path)
  ckpt = checkpoints.make_checkpoint(learners.build(config))
  assert checkpoints.restore(ckpt, str(tmp_path)) == path
  assert int(ckpt.step.numpy()) == 7
  empty = tmp_path / 'empty'
  assert checkpoints.restore(ckpt, str(empty), required=False) is None
  with pytest.raises(checkpoints.CheckpointError, match='no checkpoint in .*empty'):
    checkpoints.restore(ckpt, str(empty))


def test_corrupt_checkpoint_is_one_line(tmp_path):
  config, path = _saved_run(tmp_path)
  with open(path + '.data-00000-of-00001', 'r+b') as f:
    f.truncate(10)
  ckpt = checkpoints.make_checkpoint(learners.build(config))
  with pytest.raises(checkpoints.CheckpointError) as err:
    checkpoints.restore(ckpt, str(tmp_path))
  assert 'ckpt-7' in str(err.value) and 'corrupt' in str(err.value)
  assert '\n' not in str(err.value)


def test_mismatched_model_is_reported(tmp_path):
  config, _ = _saved_run(tmp_path)
  other = checkpoints.make_checkpoint(learners.build(config.replace(channels=8)))
  with pytest.raises(checkpoints.CheckpointError, match='does not match this model'):
    checkpoints.restore(other, str(tmp_path))
  assert os.path.exists(os.path.join(str(tmp_path), 'ckpt', 'checkpoint'))


def test_missing_files_and_set_aside(tmp_path):
  config, _ = _saved_run(tmp_path)
  ckpt = checkpoints.make_checkpoint(learners.build(config))
  manager = checkpoints.make_manager(ckpt, str(tmp_path))
  manager.save(checkpoint_number=9)
  ckpt_dir = os.path.join(str(tmp_path), 'ckpt')
  on_disk = checkpoints.checkpoints_on_disk(ckpt_dir)
  assert sorted(on_disk) == [7, 9]
  assert checkpoints.missing_files(os.path.join(ckpt_dir, 'ckpt-9'), on_disk[9]) == []
  assert checkpoints.missing_files(os.path.join(ckpt_dir, 'ckpt-9'), ['ckpt-9.index']) == [
      'ckpt-9.data-00000-of-00001']
  aside = checkpoints.set_aside(str(tmp_path), [9])
  assert sorted(os.listdir(aside)) == ['ckpt-9.data-00000-of-00001', 'ckpt-9.index']
  assert sorted(checkpoints.checkpoints_on_disk(ckpt_dir)) == [7]
  assert tf.train.latest_checkpoint(ckpt_dir).endswith('ckpt-7')
