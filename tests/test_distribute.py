"""tf.distribute: mirrored over 2 logical CPU devices and 2 workers on loopback give the
single-device numbers (meta-gradient, update, training, evaluation), and a SIGTERM to one
worker stops both with a checkpoint from which they resume to the uninterrupted weights."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import distributed_step
import helpers
from metadrop_tf import config as config_lib
from metadrop_tf.runtime import distribute

pytestmark = pytest.mark.xdist_group('distribute')  # one worker: module fixtures built once
SCRIPT = os.path.join(helpers.REPO, 'tests', 'distributed_step.py')
# SGD, not Adam: Adam turns round-off-sized gradient differences (another reduction order on
# another thread count) into full steps, so runs are compared under SGD (see docs/testing.md).
TINY_FLAGS = ['--meta_optimizer=sgd', '--way=3', '--shot=1', '--query=2', '--metabatch=2',
              '--n_steps=1',
              '--channels=4', '--log_freq=1', '--eval_freq=1000', '--eval_batches=1',
              '--n_test_iters=7', '--test_metabatch=2', '--n_test_mc_samp=2', '--seed=3']
ITERS = 20
LAST = f'ckpt-{ITERS}'


def _env(**extra):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([helpers.REPO,
                                                     os.path.join(helpers.REPO, 'tests')]))
  env.pop('TF_CONFIG', None)
  env.update(extra)
  return env


def _start_workers(argv, n=2, cwd=None):
  """n processes of argv, one per worker of a loopback cluster (TF_CONFIG); their Popens."""
  procs = []
  for tf_config in distribute.loopback_tf_configs(n):
    procs.append(subprocess.Popen([sys.executable, *argv], cwd=cwd or helpers.REPO,
                                  env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True))
  return procs


def _wait(procs, timeout=300):
  """(exit codes, outputs) of the processes; those still running after `timeout` seconds are
  killed (a hung worker fails the test instead of outliving it)."""
  try:
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
  finally:
    for p in procs:
      p.kill()
  return [p.returncode for p in procs], outputs


def _run_workers(argv, n=2):
  codes, outputs = _wait(_start_workers(argv, n))
  assert codes == [0] * n, outputs
  return outputs


def _weights(checkpoint):
  """name -> array of the network's variables in a checkpoint."""
  reader = tf.train.load_checkpoint(checkpoint)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k.startswith('model/')}


def _assert_close(got, expected, rtol, atol):
  assert sorted(got) == sorted(expected)
  for key in expected:
    np.testing.assert_allclose(got[key], expected[key], rtol=rtol, atol=atol, err_msg=key)


# --- the step: meta-gradient and update in float64 -----------------------------------------
@pytest.fixture(scope='module')
def single_device():
  return distributed_step.compute(tf.distribute.get_strategy())


def _check_step(got, expected):
  assert int(got['replicas']) == 2
  for name in distributed_step.LEARNERS:
    grads = [k for k in expected if k.startswith(f'{name}/grad/')]
    assert grads
    # The clip acts on some elements, so clipping each replica's share would differ.
    assert max(np.abs(expected[k]).max() for k in grads) > distributed_step.GRAD_CLIP
    for key in [k for k in expected if k.startswith(f'{name}/')]:
      rtol = 1e-6 if expected[key].dtype == np.float32 else 1e-11  # accuracy is float32
      np.testing.assert_allclose(got[key], expected[key], rtol=rtol, atol=1e-14, err_msg=key)
  assert any(k.startswith('maml_running/running_mean/') for k in expected)


@pytest.mark.slow
def test_mirrored_meta_gradient_and_update_equal_single_device(single_device, tmp_path):
  path = str(tmp_path / 'mirrored.npz')
  subprocess.run([sys.executable, SCRIPT, 'mirrored', path], check=True, env=_env(),
                 capture_output=True)
  with np.load(path) as got:
    _check_step(dict(got), single_device)


@pytest.mark.slow
def test_multi_worker_meta_gradient_and_update_equal_single_device(single_device, tmp_path):
  path = str(tmp_path / 'multi_worker.npz')
  _run_workers([SCRIPT, 'multi_worker', path])
  with np.load(path) as got:
    _check_step(dict(got), single_device)


# --- the programs ----------------------------------------------------------------------------
@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('distribute') / 'data')
  helpers.write_tiny_shards(path)
  return path


def _run_flags(data_dir):
  """A training run of ITERS iterations that saves every 5 (all of them kept)."""
  return [f'--data_dir={data_dir}', f'--n_train_iters={ITERS}', '--save_freq=5', *TINY_FLAGS]


@pytest.fixture(scope='module')
def single_run(data_dir):
  """A single-process training run (the reference of the distributed ones)."""
  savedir = os.path.join(os.path.dirname(data_dir), 'single')
  assert helpers.run_program('train', f'--savedir={savedir}', *_run_flags(data_dir)) == 0
  return savedir


@pytest.fixture(scope='module')
def two_worker_run(data_dir):
  """The same run on two workers; also the uninterrupted reference of the preempted one."""
  savedir = os.path.join(os.path.dirname(data_dir), 'two_workers')
  _run_workers(['train.py', f'--savedir={savedir}', '--strategy=multi_worker',
                *_run_flags(data_dir)])
  return savedir


@pytest.mark.slow
def test_two_workers_train_like_one_process(single_run, two_worker_run):
  expected = _weights(os.path.join(single_run, 'ckpt', LAST))
  _assert_close(_weights(os.path.join(two_worker_run, 'ckpt', LAST)), expected,
                rtol=1e-4, atol=1e-6)
  # The run directory looks like a single-process run's: only the chief wrote it.
  assert sorted(os.listdir(two_worker_run)) == sorted(os.listdir(single_run))
  assert sorted(os.listdir(os.path.join(two_worker_run, 'ckpt'))) == sorted(
      os.listdir(os.path.join(single_run, 'ckpt')))
  with open(os.path.join(two_worker_run, 'train.log')) as f:
    log = f.read()
  assert 'on 2 replicas' in log and log.count(f'train | iteration {ITERS} ') == 1
  # ... and resumes in one process.
  assert helpers.run_program('train', f'--savedir={two_worker_run}',
                             f'--n_train_iters={ITERS + 1}') == 0
  assert os.path.exists(os.path.join(two_worker_run, 'ckpt', f'ckpt-{ITERS + 1}.index'))


@pytest.mark.slow
def test_mirrored_program_trains_like_one_process(single_run, data_dir, tmp_path):
  savedir = str(tmp_path / 'mirrored')
  subprocess.run([sys.executable, 'train.py', f'--savedir={savedir}', '--strategy=mirrored',
                  '--cpu_devices=2', *_run_flags(data_dir)], check=True, cwd=helpers.REPO,
                 env=_env(), capture_output=True)
  _assert_close(_weights(os.path.join(savedir, 'ckpt', LAST)),
                _weights(os.path.join(single_run, 'ckpt', LAST)), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_both_evaluating_and_they_continue_like_one_process(
    two_worker_run):
  flags = [f'--savedir={two_worker_run}', '--n_test_iters=100', '--test_metabatch=1']
  partial = os.path.join(two_worker_run, 'eval_test.partial.json')
  procs = _start_workers(['evaluate.py', '--strategy=multi_worker', *flags])
  deadline = time.time() + 240
  while time.time() < deadline and not (
      os.path.exists(partial) and len(json.load(open(partial))['outputs']['acc']) >= 4):
    assert all(p.poll() is None for p in procs), 'a worker ended early'
    time.sleep(0.1)
  procs[1].send_signal(signal.SIGTERM)  # the worker that is not the chief
  codes, outputs = _wait(procs, timeout=120)
  assert codes == [130, 130], outputs
  assert 'interrupted: the episodes done are kept in' in outputs[0]
  done = len(json.load(open(partial))['outputs']['acc'])
  assert 4 <= done < 100
  outputs = _run_workers(['evaluate.py', '--strategy=multi_worker', *flags])
  assert f'continuing after the {done} episodes' in outputs[0]
  path = os.path.join(two_worker_run, 'eval_test.json')
  with open(path) as f:
    distributed = json.load(f)
  os.remove(path)
  assert helpers.run_program('evaluate', *flags) == 0
  with open(path) as f:
    single = json.load(f)
  assert distributed['n_episodes'] == single['n_episodes'] == 100
  assert distributed['per_episode_accuracy'] == single['per_episode_accuracy']
  assert distributed['accuracy'] == single['accuracy']


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_both_with_a_checkpoint_and_they_resume(
    data_dir, two_worker_run):
  flags = ['--strategy=multi_worker', *_run_flags(data_dir)]
  savedir = os.path.join(os.path.dirname(data_dir), 'preempted')
  procs = _start_workers(['train.py', f'--savedir={savedir}', *flags])
  log = os.path.join(savedir, 'train.log')
  deadline = time.time() + 240
  while time.time() < deadline:
    if os.path.exists(log) and 'train | iteration 2 ' in open(log).read():
      break
    assert all(p.poll() is None for p in procs), 'a worker ended early'
    time.sleep(0.2)
  procs[1].send_signal(signal.SIGTERM)  # the worker that is not the chief
  codes, outputs = _wait(procs)
  assert codes == [130, 130], outputs
  stopped_at = int(tf.train.latest_checkpoint(os.path.join(savedir, 'ckpt')).split('-')[-1])
  assert 2 <= stopped_at < ITERS
  with open(log) as f:
    assert f'preempted: saved iteration {stopped_at}' in f.read()
  _run_workers(['train.py', f'--savedir={savedir}', *flags])
  with open(log) as f:
    assert f'resumed at iteration {stopped_at} of {ITERS}' in f.read()
  _assert_close(_weights(os.path.join(savedir, 'ckpt', LAST)),
                _weights(os.path.join(two_worker_run, 'ckpt', LAST)), rtol=0, atol=0)


# --- settings ----------------------------------------------------------------------------------
def test_auto_strategy_is_one_device_here_and_multi_worker_with_a_cluster(monkeypatch):
  config = helpers.tiny_config()
  monkeypatch.delenv('TF_CONFIG', raising=False)
  assert distribute.strategy_name(config) == 'one_device'
  assert distribute.strategy_name(config.replace(cpu_devices=2)) == 'mirrored'
  monkeypatch.setenv('TF_CONFIG', json.dumps(
      {'cluster': {'worker': ['localhost:1', 'localhost:2']},
       'task': {'type': 'worker', 'index': 1}}))
  assert distribute.strategy_name(config) == 'multi_worker'


@pytest.mark.parametrize('tf_config, words', [
    ('{"cluster": ', 'TF_CONFIG is not valid JSON'),
    ('[1, 2]', 'TF_CONFIG must be a JSON object'),
    ('{"cluster": {"worker": ["localhost:1"]}}', 'TF_CONFIG names a cluster but no "task"'),
])
def test_bad_tf_config_is_one_line(monkeypatch, tf_config, words):
  monkeypatch.setenv('TF_CONFIG', tf_config)
  with pytest.raises(config_lib.ConfigError, match=words):
    distribute.make_strategy(helpers.tiny_config(strategy='multi_worker'))


def test_multi_worker_without_tf_config_is_one_line(monkeypatch):
  monkeypatch.delenv('TF_CONFIG', raising=False)
  with pytest.raises(config_lib.ConfigError, match='needs TF_CONFIG'):
    distribute.make_strategy(helpers.tiny_config(strategy='multi_worker'))


@pytest.mark.slow
def test_a_meta_batch_that_does_not_split_among_the_replicas_is_one_line(data_dir, tmp_path):
  flags = [f for f in TINY_FLAGS if not f.startswith('--metabatch')]
  result = subprocess.run(
      [sys.executable, 'train.py', f'--savedir={tmp_path / "run"}', f'--data_dir={data_dir}',
       '--metabatch=3', '--strategy=mirrored', '--cpu_devices=2', *flags],
      cwd=helpers.REPO, env=_env(), capture_output=True, text=True)
  assert result.returncode == 2, result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('error: --metabatch=3 does not split among the 2 replicas'), last
  assert 'Traceback' not in result.stderr
  assert not os.path.exists(tmp_path / 'run' / 'config.json')


def test_cpu_devices_too_late_is_one_line():
  tf.constant(1)  # the runtime of this process has started
  with pytest.raises(config_lib.ConfigError, match='`cpu_devices=3`: the TF runtime'):
    distribute.configure_devices(helpers.tiny_config(cpu_devices=3))
