"""A learner written outside the package, in one module, trains, evaluates and is checked
through the programs with no other change (docs/adding.md)."""

import json
import os
import subprocess
import sys

import pytest

import helpers

TOY = '''"""A toy learner: MAML whose inner learning rate is half of --inner_lr."""

from metadrop_tf.learners import gradient
from metadrop_tf import learners


@learners.register('toy_half_rate')
class HalfRateMAML(gradient.GradientLearner):

  @classmethod
  def from_config(cls, network, config, **kwargs):
    return super().from_config(network, config.replace(inner_lr=config.inner_lr / 2), **kwargs)
'''


def _run(tmp_path, script, *args):
  return subprocess.run([sys.executable, os.path.join(helpers.REPO, script), *args],
                        cwd=str(tmp_path), capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_toy_learner_from_its_own_module_trains_and_evaluates(tmp_path):
  (tmp_path / 'toy_learner.py').write_text(TOY)
  data_dir = str(tmp_path / 'data')
  helpers.write_tiny_shards(data_dir)
  run = str(tmp_path / 'run')
  common = ['--import_modules=toy_learner', f'--savedir={run}']
  train = _run(tmp_path, 'train.py', *common, f'--data_dir={data_dir}', '--learner=toy_half_rate',
               '--way=3', '--shot=1', '--query=2', '--n_steps=1', '--metabatch=2',
               '--channels=4', '--n_train_iters=2', '--save_freq=2', '--eval_freq=2',
               '--eval_batches=1', '--log_freq=1', '--n_test_iters=2')
  assert train.returncode == 0, train.stderr[-3000:]
  with open(os.path.join(run, 'config.json')) as f:
    saved = json.load(f)
  assert saved['learner'] == 'toy_half_rate' and saved['import_modules'] == 'toy_learner'
  evaluation = _run(tmp_path, 'evaluate.py', f'--savedir={run}')  # config.json names the module
  assert evaluation.returncode == 0, evaluation.stderr[-3000:]
  assert 'toy_half_rate | test | step 2 | 2 episodes' in evaluation.stdout
  # its options are the gradient learners' (it subclasses them); a base-class option check
  # still applies: --resnet_widths does not fit its conv4 backbone
  bad = _run(tmp_path, 'train.py', '--import_modules=toy_learner', f'--savedir={run}_2',
             f'--data_dir={data_dir}', '--learner=toy_half_rate', '--resnet_widths=2,2,2,2')
  assert bad.returncode == 2
  assert bad.stderr.strip() == ('error: --resnet_widths=2,2,2,2 does not apply to '
                                '--backbone=conv4: it is an option of --backbone=resnet12; '
                                'leave it out')
  missing = _run(tmp_path, 'train.py', '--import_modules=no_such_module', f'--savedir={run}_3',
                 f'--data_dir={data_dir}')
  assert missing.returncode == 2
  assert missing.stderr.startswith('error: --import_modules=no_such_module: cannot import it')
  assert not os.path.exists(f'{run}_3/config.json')
