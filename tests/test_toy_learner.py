"""A learner written outside the package, in one module with an option of its own, trains,
evaluates and is checked through the programs with no other change (docs/adding.md)."""

import json
import os
import subprocess
import sys

import pytest

import helpers

TOY = '''"""A toy learner: MAML whose inner learning rate is --inner_lr times --toy_rate_factor."""

from metadrop_tf import config
from metadrop_tf import learners
from metadrop_tf.learners import gradient


@learners.register('toy_scaled_rate')
class ScaledRateMAML(gradient.GradientLearner):
  OPTIONS = {'toy_rate_factor': config.Option(0.5, 'Factor of --inner_lr in the inner loop.')}

  @classmethod
  def from_config(cls, network, config, **kwargs):
    scaled = config.replace(inner_lr=config.inner_lr * config.toy_rate_factor)
    return super().from_config(network, scaled, **kwargs)
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
  train = _run(tmp_path, 'train.py', *common, f'--data_dir={data_dir}',
               '--learner=toy_scaled_rate', '--toy_rate_factor=0.25',
               '--way=3', '--shot=1', '--query=2', '--n_steps=1', '--metabatch=2',
               '--channels=4', '--n_train_iters=2', '--save_freq=2', '--eval_freq=2',
               '--eval_batches=1', '--log_freq=1', '--n_test_iters=2')
  assert train.returncode == 0, train.stderr[-3000:]
  with open(os.path.join(run, 'config.json')) as f:
    saved = json.load(f)
  assert saved['learner'] == 'toy_scaled_rate' and saved['import_modules'] == 'toy_learner'
  assert saved['toy_rate_factor'] == 0.25  # its own option, recorded beside the others
  with open(os.path.join(run, 'flags.cfg')) as f:
    assert '--toy_rate_factor=0.25\n' in f.read()
  # Then, by the programs' code in one fresh process (the toy module registers itself there, as
  # in a program): evaluate.py (config.json names the module), and the refusals, each one line
  # and exit 2: resuming may not change its option (a setting of the trained run); its option
  # with another learner; a base-class option that does not fit the backbone; a module that
  # does not import (nothing written).
  cases = [
      ([f'--savedir={run}', '--import_modules=toy_learner', '--toy_rate_factor=0.5',
        '--n_train_iters=3'],
       f'error: --toy_rate_factor=0.5 contradicts the run in {run} (toy_rate_factor=0.25)'),
      (['--import_modules=toy_learner', f'--savedir={run}_2', f'--data_dir={data_dir}',
        '--learner=maml', '--toy_rate_factor=0.1'],
       'error: --toy_rate_factor=0.1 does not apply to --learner=maml: it is an option of '
       '--learner=toy_scaled_rate; leave it out'),
      (['--import_modules=toy_learner', f'--savedir={run}_2', f'--data_dir={data_dir}',
        '--learner=toy_scaled_rate', '--resnet_widths=2,2,2,2'],
       'error: --resnet_widths=2,2,2,2 does not apply to --backbone=conv4: it is an option of '
       '--backbone=resnet12; leave it out'),
      (['--import_modules=no_such_module', f'--savedir={run}_3', f'--data_dir={data_dir}'],
       'error: --import_modules=no_such_module: cannot import it')]
  runs = [['evaluate', f'--savedir={run}']] + [['train', *args] for args, _ in cases]
  done = subprocess.run([sys.executable, '-c', PROGRAMS, json.dumps(runs)],
                        cwd=str(tmp_path), capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                            [str(tmp_path), helpers.REPO, os.path.dirname(__file__)])))
  assert done.returncode == 0, done.stderr[-3000:]
  evaluation, *refusals = json.loads(done.stdout.splitlines()[-1])
  assert evaluation[0] == 0, evaluation[2][-3000:]
  assert 'toy_scaled_rate | test | iteration 2 | 2 episodes' in evaluation[1]
  for (_, message), (code, _, stderr) in zip(cases, refusals):
    assert code == 2 and stderr.startswith(message) and '\n' not in stderr, stderr
  assert not os.path.exists(f'{run}_3/config.json')


# Runs a program's code once per [program, args...] (argv[1], JSON) in this fresh process;
# prints [[exit status, stdout, stderr], ...] as JSON.
PROGRAMS = """
import contextlib, io, json, sys
import helpers
results = []
for program, *args in json.loads(sys.argv[1]):
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = helpers.run_program(program, *args)
  results.append([code, out.getvalue(), err.getvalue().strip()])
print(json.dumps(results))
"""


def test_its_option_is_a_flag_with_help_under_its_learner(tmp_path, monkeypatch):
  (tmp_path / 'toy_learner.py').write_text(TOY)
  monkeypatch.chdir(tmp_path)
  shown = _run(tmp_path, 'train.py', '--help', '--import_modules=toy_learner',
               '--learner=toy_scaled_rate')
  assert shown.returncode == 0, shown.stderr[-3000:]
  text = shown.stdout
  assert "--toy_rate_factor: Factor of --inner_lr in the inner loop. (default: '0.5')" in text
  assert 'used by --learner=toy_scaled_rate' in text
  assert 'csn, fomaml, maml, metadrop, metalstm, metasgd, toy_scaled_rate)' in text
  assert text.index('learner options') < text.index('--toy_rate_factor')
