"""Through the real entry points on the real Omniglot shards: train, resume, evaluate, errors."""

import json
import os
import subprocess
import sys

import pytest

import helpers

pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(helpers.SHARED_OMNIGLOT, 'train.npz')),
    reason='needs the real Omniglot shards in ../shared/data/omniglot')

SMALL = ['--flagfile=configs/smoke.cfg', f'--data_dir={helpers.SHARED_OMNIGLOT}',
         '--channels=8', '--n_steps=1', '--save_freq=2', '--log_freq=2', '--eval_freq=4',
         '--eval_batches=1']


def _run(script, *args):
  return subprocess.run([sys.executable, script, *args], cwd=helpers.REPO, capture_output=True,
                        text=True, timeout=600, check=False)


@pytest.mark.slow
def test_train_resume_evaluate(tmp_path):
  savedir = str(tmp_path / 'run')
  first = _run('train.py', *SMALL, f'--savedir={savedir}', '--n_train_iters=2')
  assert first.returncode == 0, first.stderr[-2000:]
  assert 'Sharding callback' not in first.stderr  # TF's line at every save is filtered
  for name in ('config.json', 'flags.cfg', 'train.log', 'ckpt/ckpt-2.index'):
    assert os.path.exists(os.path.join(savedir, name)), name
  assert os.listdir(os.path.join(savedir, 'tb', 'train'))
  second = _run('train.py', *SMALL, f'--savedir={savedir}', '--n_train_iters=4')
  assert second.returncode == 0, second.stderr[-2000:]
  log = open(os.path.join(savedir, 'train.log')).read()
  assert 'resumed at iteration 2 of 4' in log and 'eval test | step 4' in log
  assert json.load(open(os.path.join(savedir, 'config.json')))['n_train_iters'] == 4
  evaluation = _run('evaluate.py', f'--savedir={savedir}', '--n_test_iters=6',
                    '--n_test_mc_samp=2')
  assert evaluation.returncode == 0, evaluation.stderr[-2000:]
  assert 'test | step 4 | 6 episodes, 2 MC | accuracy' in evaluation.stdout
  result = json.load(open(os.path.join(savedir, 'eval_test.json')))
  assert result['checkpoint_step'] == 4 and len(result['per_episode_accuracy']) == 6
  assert 0 <= result['accuracy'] <= 100 and result['ci95'] >= 0
  contradiction = _run('evaluate.py', f'--savedir={savedir}', '--way=3')
  _assert_one_line_error(contradiction, '--way=3 contradicts the run in ')


def _assert_one_line_error(proc, text):
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and text in last, last


@pytest.mark.slow
def test_bad_input_is_one_line(tmp_path):
  _assert_one_line_error(_run('evaluate.py', f'--savedir={tmp_path}'), 'config.json not found')
  _assert_one_line_error(
      _run('train.py', *SMALL, f'--savedir={tmp_path / "a"}', '--shot=10', '--query=15'),
      '--shot=10 plus --query=15 exceeds the 20 instances')
  _assert_one_line_error(
      _run('train.py', f'--savedir={tmp_path / "b"}', f'--data_dir={tmp_path / "none"}'),
      'prepare it with: python data/prepare.py')


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_command_resumes(tmp_path):
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  savedir = str(tmp_path / 'run')
  args = [sys.executable, 'train.py', *SMALL, f'--savedir={savedir}', '--n_train_iters=100000',
          '--save_freq=100000', '--eval_freq=100000']
  proc = subprocess.Popen(args, cwd=helpers.REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  log = os.path.join(savedir, 'train.log')
  deadline = time.time() + 300
  while time.time() < deadline and not (
      os.path.exists(log) and 'train | step 2 ' in open(log).read()):
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr[-2000:]
  text = open(log).read()
  assert 'interrupted: saved iteration' in text
  saved = int(text.split('interrupted: saved iteration ')[1].split()[0])
  assert saved >= 2 and os.path.exists(os.path.join(savedir, 'ckpt', f'ckpt-{saved}.index'))
  resumed = _run('train.py', *SMALL, f'--savedir={savedir}', f'--n_train_iters={saved + 1}')
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f'resumed at iteration {saved} of {saved + 1}' in open(log).read()
