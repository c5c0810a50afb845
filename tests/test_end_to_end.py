"""Through the real entry points on the real Omniglot shards: train, stop, resume, evaluate."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import helpers

pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(helpers.SHARED_OMNIGLOT, 'train.npz')),
    reason='needs the real Omniglot shards in ../shared/data/omniglot')

SMALL = ['--flagfile=configs/smoke.cfg', f'--data_dir={helpers.SHARED_OMNIGLOT}',
         '--channels=8', '--n_steps=1', '--save_freq=2', '--log_freq=2', '--eval_freq=4',
         '--eval_batches=1']
IN_PROCESS = [f'--flagfile={os.path.join(helpers.REPO, "configs", "smoke.cfg")}', *SMALL[1:]]


@pytest.mark.slow
def test_train_stop_resume_evaluate(tmp_path, capsys):
  """train.py stopped by SIGTERM saves a checkpoint; the same command resumes from it; then
  evaluate.py; and a user error on the real data is one line."""
  savedir = str(tmp_path / 'run')
  proc = subprocess.Popen([sys.executable, 'train.py', *SMALL, f'--savedir={savedir}',
                           '--n_train_iters=100000', '--save_freq=100000'],
                          cwd=helpers.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  log = os.path.join(savedir, 'train.log')
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None and not (
      os.path.exists(log) and 'train | iteration 2 ' in open(log).read()):
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr[-2000:]
  assert 'Sharding callback' not in stderr  # TF's line at every save is filtered
  text = open(log).read()
  saved = int(text.split('interrupted: saved iteration ')[1].split()[0])
  assert saved >= 2
  for name in ('config.json', 'flags.cfg', f'ckpt/ckpt-{saved}.index'):
    assert os.path.exists(os.path.join(savedir, name)), name
  assert os.listdir(os.path.join(savedir, 'tb', 'train'))
  end = saved + 2
  # Resumed and evaluated in this process (the same code as the programs' main; a process
  # start costs the suite seconds).
  capsys.readouterr()
  assert helpers.run_program('train', *IN_PROCESS, f'--savedir={savedir}',
                             f'--n_train_iters={end}', f'--eval_freq={end}') == 0, \
      capsys.readouterr().err[-2000:]
  text = open(log).read()
  assert f'resumed at iteration {saved} of {end}' in text and f'eval test | iteration {end}' in text
  assert json.load(open(os.path.join(savedir, 'config.json')))['n_train_iters'] == end
  assert helpers.run_program('evaluate', f'--savedir={savedir}', '--n_test_iters=6',
                             '--n_test_mc_samp=2') == 0, capsys.readouterr().err[-2000:]
  assert f'test | iteration {end} | 6 episodes, 2 MC | accuracy' in capsys.readouterr().out
  result = json.load(open(os.path.join(savedir, 'eval_test.json')))
  assert result['checkpoint_step'] == end and len(result['per_episode_accuracy']) == 6
  assert 0 <= result['accuracy'] <= 100 and result['ci95'] >= 0
  # An error on the real data is one line (train.py's code, in this process; the tests of
  # tests/test_faults.py cover the other errors on tiny shards).
  code = helpers.run_program('train', *IN_PROCESS,
                             f'--savedir={tmp_path / "a"}', '--shot=10', '--query=15')
  stderr = capsys.readouterr().err
  assert code == 2 and 'Traceback' not in stderr, stderr[-2000:]
  assert stderr.strip().splitlines()[-1].startswith(
      'error: --shot=10 plus --query=15 exceeds the 20 instances'), stderr[-2000:]
