"""Bad input and faults through the three programs: one line, a status, nothing lost.

Each row of BAD_INPUTS builds a broken run directory, data folder or flag, runs a program the
way the command line does (flags parsed by absl, main guarded), and checks the exit status,
the first words of the one-line message on stderr, and that no traceback escaped. The
programs run in this process (a traceback would surface as an uncaught exception); the
end-to-end tests run the same programs as subprocesses.
"""

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import helpers
from metadrop_tf import learners
from metadrop_tf.runtime import checkpoints


def _first_error_line(text):
  lines = [line for line in text.splitlines() if line.startswith(('error: ', 'FATAL '))]
  return lines[-1] if lines else ''


# Setups: each builds what the row needs under root and returns {name: path} for the args.
def _run(root, **changes):
  config, savedir = helpers.saved_run(root, **changes)
  return {'run': savedir, 'data': config.data_dir, 'root': str(root)}


def _file(root):
  path = os.path.join(str(root), 'a_file')
  with open(path, 'w') as f:
    f.write('not a directory')
  return {**_run(root), 'file': path}


def _edit_config(key, value):
  def setup(root):
    paths = _run(root)
    path = os.path.join(paths['run'], 'config.json')
    values = json.load(open(path))
    if value is None and key == 'DELETE':
      del values['way']
    else:
      values[key] = value
    with open(path, 'w') as f:
      json.dump(values, f)
    return paths
  return setup


def _text_config(root):
  paths = _run(root)
  with open(os.path.join(paths['run'], 'config.json'), 'w') as f:
    f.write('{"way": 3,')
  return paths


def _damaged_shard(mode):
  def setup(root):
    paths = _run(root, manifest=mode == 'manifest')
    shard = os.path.join(paths['data'], 'train.npz')
    if mode == 'manifest':  # a copy that stopped early, caught by the manifest
      os.truncate(shard, os.path.getsize(shard) - 10)
    else:
      os.truncate(shard, os.path.getsize(shard) // 3)
    return paths
  return setup


def _no_checkpoint_restores(root):
  paths = _run(root, checkpoints_at=(2, 4))
  for data_file in glob.glob(os.path.join(paths['run'], 'ckpt', '*.data-*')):
    os.truncate(data_file, 7)
  return paths


def _non_finite_checkpoint(root):
  config, savedir = helpers.saved_run(root, checkpoints_at=())
  model = learners.build(config)
  kernel = model.network.theta['conv0_kernel']
  kernel.assign(np.full(kernel.shape, np.nan))
  ckpt = checkpoints.make_checkpoint(model)
  ckpt.step.assign(5)
  checkpoints.make_manager(ckpt, savedir).save(checkpoint_number=5)
  return {'run': savedir, 'data': config.data_dir, 'root': str(root)}


def _non_empty_export(root):
  paths = _run(root)
  os.makedirs(os.path.join(paths['run'], 'export'))
  with open(os.path.join(paths['run'], 'export', 'notes.txt'), 'w') as f:
    f.write('mine')
  return paths


BAD_INPUTS = [
    # (id, program, setup, args, exit status, first words of the message)
    ('savedir is a file', 'train', _file, ['--savedir={file}'], 2,
     'error: --savedir={file} is a file, not a directory'),
    ('export_dir is a file', 'export', _file, ['--savedir={run}', '--export_dir={file}'], 2,
     'error: --export_dir={file} is a file, not a directory'),
    ('data_dir is a file', 'train', _file,
     ['--savedir={root}/new', '--data_dir={file}', '--channels=4'], 2,
     'error: --data_dir={file} is a file, not a directory'),
    ('no config.json', 'evaluate', _file, ['--savedir={root}'], 2,
     'error: {root}/config.json not found'),
    ('config value of a wrong type', 'evaluate', _edit_config('way', '3'), ['--savedir={run}'], 2,
     'error: {run}/config.json: "way" is "3"; expected an integer'),
    ('config null', 'export', _edit_config('inner_lr', None), ['--savedir={run}'], 2,
     'error: {run}/config.json: "inner_lr" is null; expected a finite number'),
    ('config key missing', 'evaluate', _edit_config('DELETE', None), ['--savedir={run}'], 2,
     "error: {run}/config.json lacks the keys ['way']"),
    ('config not JSON', 'train', _text_config, ['--savedir={run}'], 2,
     'error: {run}/config.json is not valid JSON'),
    ('inner_lr inf', 'train', _run, ['--savedir={root}/new', '--inner_lr=inf'], 2,
     'error: --inner_lr=inf must be a positive finite number'),
    ('meta_lr nan', 'train', _run, ['--savedir={root}/new', '--meta_lr=nan'], 2,
     'error: --meta_lr=nan must be a positive finite number'),
    ('truncated shard', 'train', _damaged_shard('truncate'), ['--savedir={run}'], 2,
     'error: {data}/train.npz is damaged or truncated'),
    ('shard shorter than its manifest', 'evaluate', _damaged_shard('manifest'),
     ['--savedir={run}', '--split=train'], 2, 'error: {data}/train.npz has'),
    ('no checkpoint restores', 'evaluate', _no_checkpoint_restores, ['--savedir={run}'], 2,
     'error: {run}/ckpt holds ckpt-2, ckpt-4 but none can be restored'),
    ('checkpoint does not exist', 'evaluate', _run,
     ['--savedir={run}', '--checkpoint=/nonexistent/ckpt-5'], 2,
     'error: --checkpoint=/nonexistent/ckpt-5 does not exist'),
    ('non-finite checkpoint', 'evaluate', _non_finite_checkpoint, ['--savedir={run}'], 2,
     'error: checkpoint {run}/ckpt/ckpt-5 holds non-finite weights'),
    ('split unknown', 'evaluate', _run, ['--savedir={run}', '--split=bogus'], 2,
     "error: --split=bogus is not a split; choose one of ['train', 'val', 'test']"),
    ('omniglot val without hold-out', 'evaluate', _run, ['--savedir={run}', '--split=val'], 2,
     'error: --split=val: Omniglot has no val shard'),
    ('export into a non-empty folder', 'export', _non_empty_export, ['--savedir={run}'], 2,
     'error: --export_dir={run}/export is not empty; pass --overwrite'),
    ('attack norm unknown', 'evaluate', _run, ['--savedir={run}', '--attack=pgd',
                                               '--attack_norm=l3'], 2,
     "error: --attack_norm='l3' must be one of ['linf', 'l2', 'l1']"),
    ('attack eps not numbers', 'evaluate', _run, ['--savedir={run}', '--attack=pgd',
                                                  '--attack_eps=0.1,big'], 2,
     "error: --attack_eps='0.1,big' must be numbers separated by commas"),
    ('learner unknown', 'train', _run,
     ['--savedir={root}/new', '--data_dir={data}', '--way=3', '--learner=reptile'], 2,
     "error: --learner=reptile is unknown; choose one of ['anil', 'csn', 'fomaml'"),
    ('contradicting a trained run', 'train', _run, ['--savedir={run}', '--way=4'], 2,
     'error: --way=4 contradicts the run in '),
    ('unknown flag', 'train', _run, ['--savedir={run}', '--wya=3'], 2,
     "error: Unknown command line flag 'wya'"),
    ('positional argument', 'evaluate', _run, ['--savedir={run}', 'test'], 2,
     "error: unexpected arguments ['test']"),
]


@pytest.mark.parametrize('program, setup, args, status, words',
                         [row[1:] for row in BAD_INPUTS], ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_gives_one_line_and_a_status(tmp_path, capsys, program, setup, args, status,
                                               words):
  paths = setup(tmp_path)
  before = _snapshot(paths['run'])
  got = helpers.run_program(program, *[a.format(**paths) for a in args])
  err = capsys.readouterr().err
  assert got == status, err[-2000:]
  assert 'Traceback' not in err
  assert _first_error_line(err).startswith(words.format(**paths)), err[-2000:]
  if 'none can be restored' not in words and 'non-empty' not in words:
    assert _snapshot(paths['run']) == before  # nothing already written was changed


def _snapshot(folder):
  """{relative path: (size, mtime)} of the files under folder: what a failed run must keep."""
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      out[os.path.relpath(path, folder)] = (os.path.getsize(path), os.path.getmtime(path))
  return out


def test_help_lists_the_programs_own_flags_first_and_exits_0(capsys):
  for program, own in (('train', '--[no]describe'), ('evaluate', '--split'),
                       ('export', '--[no]overwrite')):
    assert helpers.run_program(program, '--help') == 0
    out = capsys.readouterr().out
    assert own in '\n'.join(out.splitlines()[:40]), out[:3000]
    assert '--tpu' not in out and 'absl.logging' not in out
  assert helpers.run_program('train', '--help') == 0
  out = capsys.readouterr().out
  assert '--way' in out and 'Inner learning rate' in out and '\nlearner options' in out
  assert f'(--learner=...; registered: {", ".join(sorted(learners.REGISTRY))})' in out
  assert "(--backbone=...; registered: conv4, mlp, resnet12)" in out


def test_help_read_partly_is_not_an_error(monkeypatch):
  from metadrop_tf.cli import help as help_lib  # pylint: disable=g-import-not-at-top
  read, write = os.pipe()
  os.close(read)  # the reader stopped, as `train.py --help | head -1` does
  stdout = os.fdopen(write, 'w')
  monkeypatch.setattr(sys, 'stdout', stdout)
  help_lib.show('--flag: text\n' * 10000)  # BrokenPipeError if not handled
  print('more', flush=True)  # what follows goes nowhere, without an error
  stdout.close()


def test_help_with_a_learner_shows_the_options_it_takes(capsys):
  assert helpers.run_program('train', '--help', '--learner=csn') == 0
  out = capsys.readouterr().out
  assert '--[no]first_order' in out and '--[no]lslr' not in out
  assert helpers.run_program('train', '--help', '--learner=maml') == 0
  assert '--[no]lslr' in capsys.readouterr().out


def test_a_failed_first_attempt_does_not_lock_the_run_directory(tmp_path, capsys):
  data_dir = str(tmp_path / 'data')
  helpers.write_tiny_shards(data_dir)
  savedir = str(tmp_path / 'run')
  common = [f'--savedir={savedir}', '--channels=4', '--n_steps=1', '--metabatch=1',
            '--n_train_iters=1', '--save_freq=1', '--eval_freq=1', '--eval_batches=1',
            '--log_freq=1', '--shot=1', '--query=2']
  assert helpers.run_program('train', *common, '--data_dir=' + str(tmp_path / 'missing'),
                     '--way=3') == 2
  assert not os.path.exists(os.path.join(savedir, 'config.json'))
  assert helpers.run_program('train', *common, f'--data_dir={data_dir}', '--way=20') == 2
  assert helpers.run_program('train', *common, f'--data_dir={data_dir}', '--way=4') == 0, \
      capsys.readouterr().err[-2000:]
  assert json.load(open(os.path.join(savedir, 'config.json')))['way'] == 4


def test_a_diverging_run_stops_with_status_3_and_keeps_a_finite_checkpoint(tmp_path, capsys):
  data_dir = str(tmp_path / 'data')
  helpers.write_tiny_shards(data_dir)
  savedir = str(tmp_path / 'run')
  status = helpers.run_program('train', f'--savedir={savedir}', f'--data_dir={data_dir}', '--way=3',
                       '--shot=1', '--query=2', '--channels=4', '--n_steps=1', '--metabatch=1',
                       '--n_train_iters=20', '--save_freq=1', '--eval_freq=100',
                       '--log_freq=1', '--meta_lr=1e30')
  err = capsys.readouterr().err
  assert status == 3, err[-2000:]
  line = _first_error_line(err)
  assert line.startswith('error: loss') and 'became' in line and 'stopped without saving' in line
  saved = sorted(glob.glob(os.path.join(savedir, 'ckpt', 'ckpt-*.index')))
  assert saved, 'the steps before the divergence were checkpointed'
  model = learners.build(checkpoints.read_config(savedir))
  path = checkpoints.restore(checkpoints.make_checkpoint(model), savedir)  # checks finiteness
  assert path.endswith(os.path.basename(saved[-1])[:-len('.index')])


@pytest.mark.slow
def test_a_checkpoint_index_naming_missing_files_resumes_from_the_newest_complete(
    tmp_path, capsys):
  data_dir = str(tmp_path / 'data')
  helpers.write_tiny_shards(data_dir)
  savedir = str(tmp_path / 'run')
  args = [f'--savedir={savedir}', f'--data_dir={data_dir}', '--way=3', '--shot=1', '--query=2',
          '--channels=4', '--n_steps=1', '--metabatch=1', '--save_freq=2', '--eval_freq=100',
          '--log_freq=100']
  assert helpers.run_program('train', *args, '--n_train_iters=6') == 0, capsys.readouterr().err
  ckpt_dir = os.path.join(savedir, 'ckpt')
  os.remove(os.path.join(ckpt_dir, 'ckpt-6.data-00000-of-00001'))  # a partial copy
  assert helpers.run_program('train', f'--savedir={savedir}', '--n_train_iters=8') == 0, \
      capsys.readouterr().err[-2000:]
  log = open(os.path.join(savedir, 'train.log')).read()
  assert 'warning: skipping checkpoint' in log and 'ckpt-6 is incomplete' in log
  assert 'resumed at iteration 4 of 8' in log and log.count('started at iteration 0') == 1
  assert os.listdir(os.path.join(ckpt_dir, 'unrestorable')) == ['ckpt-6.index']
  assert os.path.exists(os.path.join(ckpt_dir, 'ckpt-8.index'))


_TRAIN = [sys.executable, 'train.py', '--way=3', '--shot=1', '--query=2', '--channels=4',
          '--n_steps=1', '--metabatch=1', '--save_freq=1', '--keep_checkpoints=3',
          '--eval_freq=1000', '--log_freq=1000', '--intra_op_threads=1',
          '--inter_op_threads=1']


@pytest.mark.slow
def test_sigkill_at_random_moments_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
  """Kills a run that checkpoints every iteration with SIGKILL at random moments (so some land
  inside a save), reruns it each time, and compares the final weights with a run never
  interrupted: equal, and no restart ever began again from iteration 0."""
  data_dir = str(tmp_path / 'data')
  helpers.write_tiny_shards(data_dir)
  iters = 25
  args = _TRAIN + [f'--data_dir={data_dir}', f'--n_train_iters={iters}']
  straight = str(tmp_path / 'straight')
  subprocess.run(args + [f'--savedir={straight}'], cwd=helpers.REPO, check=True,
                 capture_output=True, timeout=600)
  killed = str(tmp_path / 'killed')
  rng = random.Random(0)
  kills = 0
  for _ in range(2):
    proc = subprocess.Popen(args + [f'--savedir={killed}'], cwd=helpers.REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    index = os.path.join(killed, 'ckpt', 'checkpoint')
    deadline = time.time() + 300
    start = _latest_step(killed)
    while time.time() < deadline and proc.poll() is None and _latest_step(killed) <= start:
      time.sleep(0.01)
    time.sleep(rng.uniform(0, 0.5))  # into the next iterations and their saves
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
      kills += 1
    proc.wait(timeout=60)
    assert os.path.exists(index)
  assert kills == 2
  subprocess.run(args + [f'--savedir={killed}'], cwd=helpers.REPO, check=True,
                 capture_output=True, timeout=600)
  log = open(os.path.join(killed, 'train.log')).read()
  assert log.count('started at iteration 0') == 1 and log.count('resumed at iteration') >= 2
  weights = []
  for savedir in (straight, killed):
    model = learners.build(checkpoints.read_config(savedir))
    ckpt = checkpoints.make_checkpoint(model)
    checkpoints.restore(ckpt, savedir)
    assert int(ckpt.step.numpy()) == iters
    weights.append([v.numpy() for v in model.variables()])
  for a, b in zip(*weights):
    np.testing.assert_array_equal(a, b)


def _latest_step(savedir):
  found = checkpoints.checkpoints_on_disk(os.path.join(savedir, 'ckpt'))
  return max(found) if found else -1
