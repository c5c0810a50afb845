"""evaluation/results.py: where a result file goes, its commit, and what computed one."""

import json
import os

import numpy as np
import pytest

import helpers
from metadrop_tf import files
from metadrop_tf.evaluation import eval_lib
from metadrop_tf.evaluation import results
from metadrop_tf.runtime import checkpoints


def _result(step, episodes):
  return {'checkpoint_step': step, 'n_episodes': episodes, 'accuracy': 50.0}


def test_a_result_of_fewer_episodes_goes_beside_the_one_of_more(tmp_path):
  path = str(tmp_path / 'eval_test.json')
  files.write_json(path, _result(100, 1000))
  beside = results.place_result(path, _result(100, 40))
  assert beside == str(tmp_path / 'eval_test.40ep.json')
  assert results.place_result(path, _result(100, 40), overwrite=True) == path
  assert results.place_result(path, _result(100, 1000)) == path
  with open(path) as f:
    assert json.load(f)['n_episodes'] == 1000


def test_a_result_of_another_checkpoint_keeps_the_earlier_one_by_its_step(tmp_path):
  path = str(tmp_path / 'eval_test.json')
  files.write_json(path, _result(100, 1000))
  assert results.place_result(path, _result(200, 40)) == path
  with open(tmp_path / 'eval_test.step100.json') as f:
    assert json.load(f) == _result(100, 1000)
  assert not os.path.exists(path)  # moved; the caller writes the new result there


def test_results_name_the_commit_that_computed_them():
  commit = results.code_commit()
  assert commit is None or len(commit.rstrip('+')) == 40


def _save_perturbed(config, savedir, step, scale):
  """Saves checkpoint `step` of the run: its initial weights, each moved by scale."""
  learner = eval_lib.learners.build(config)
  for variable in learner.trackables()['model'].trainable_variables:
    variable.assign_add(scale * np.ones(variable.shape, variable.dtype))
  ckpt = checkpoints.make_checkpoint(learner)
  ckpt.step.assign(step)
  checkpoints.make_manager(ckpt, savedir).save(checkpoint_number=step)


def test_restore_rebuilds_what_computed_a_result_with_its_seed(tmp_path):
  config, savedir = helpers.saved_run(tmp_path, n_test_iters=6)
  _save_perturbed(config, savedir, 5, 0.05)
  path = eval_lib.run(config, savedir, progress=False, seed=4)['path']  # the newest: ckpt-5
  _save_perturbed(config, savedir, 7, -0.05)  # now the newest; the result names ckpt-5
  with open(path) as f:
    saved = json.load(f)
  result, restored_config, learner, images = results.restore(path)
  assert result == saved and restored_config.seed == 4 != config.seed
  again = eval_lib.evaluate(learner, images, restored_config, 'test', 6, saved['mc_samples'],
                            progress=False)
  np.testing.assert_array_equal(again['per_episode_accuracy'], saved['per_episode_accuracy'])
  os.remove(os.path.join(savedir, checkpoints.CKPT_DIR, 'ckpt-5.index'))
  with pytest.raises(checkpoints.CheckpointError, match='ckpt-5'):
    results.restore(path)
