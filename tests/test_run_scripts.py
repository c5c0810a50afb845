"""runs/finished.py: when the run scripts skip an evaluation that is already done; every
committed run's ckpt/checkpoint state file names a checkpoint that exists; runs/reevaluate.py
recomputes a result and names one it cannot; runs/split_difficulty.py's per-class accuracies and
their summary; runs/table1_further.sh stops the peers of a failed evaluation worker."""
import glob
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'runs', 'finished.py')


def _load(path: str, name: str):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


finished = _load(SCRIPT, 'finished').finished
split_difficulty = _load(os.path.join(ROOT, 'runs', 'split_difficulty.py'), 'split_difficulty')


def make_run(tmp_path, newest, result_step, episodes, eps=None):
  """A run directory holding checkpoints 1 and <newest> (ckpt/checkpoint names the newest), and
  an eval json naming ckpt-<result_step>; returns the json's path."""
  run = tmp_path / 'run'
  (run / 'ckpt').mkdir(parents=True)
  for step in (1, newest):
    for suffix in ('index', 'data-00000-of-00001'):
      (run / 'ckpt' / f'ckpt-{step}.{suffix}').write_text('')
  (run / 'ckpt' / 'checkpoint').write_text(
      f'model_checkpoint_path: "ckpt-{newest}"\nall_model_checkpoint_paths: "ckpt-{newest}"\n')
  result = {'checkpoint': os.path.join(str(run), 'ckpt', f'ckpt-{result_step}'),
            'n_episodes': episodes}
  if eps is not None:
    result['attack'] = {'norm': 'linf', 'eps': eps}
  path = run / 'eval_test.json'
  path.write_text(json.dumps(result))
  return str(path)


def test_finished_needs_newest_checkpoint_and_same_episodes(tmp_path):
  path = make_run(tmp_path, newest=1000, result_step=1000, episodes=400)
  assert finished(path, 400)
  assert not finished(path, 600)
  assert not finished(str(tmp_path / 'run' / 'eval_val.json'), 400)  # no json yet


def test_checkpoint_file_path_relative_elsewhere(tmp_path):
  """The newest checkpoint is the one on disk that evaluate.py restores, whatever the state
  file says (it was once written relative to another folder)."""
  path = make_run(tmp_path, newest=1000, result_step=1000, episodes=400)
  (tmp_path / 'run' / 'ckpt' / 'checkpoint').write_text(
      'model_checkpoint_path: "../../../ckpt-1000"\n')
  assert finished(path, 400)


def test_older_checkpoint_is_not_finished(tmp_path):
  path = make_run(tmp_path, newest=1500, result_step=1000, episodes=400)
  assert not finished(path, 400)


def test_attack_needs_same_radii(tmp_path):
  path = make_run(tmp_path, newest=10, result_step=10, episodes=8, eps=[0.02, 0.04])
  assert finished(path, 8, '0.02,0.04')
  assert not finished(path, 8, '0.02,0.04,0.06')
  assert not finished(path, 8, '0.04,0.02')


@pytest.mark.slow
@pytest.mark.parametrize('episodes,code', [(400, 0), (600, 1)])
def test_command_line_exit_code(tmp_path, episodes, code):
  path = make_run(tmp_path, newest=1000, result_step=1000, episodes=400)
  done = subprocess.run([sys.executable, SCRIPT, path, str(episodes)], check=False)
  assert done.returncode == code


def test_committed_runs():
  """The repository's Table 1 runs: a 1000-episode evaluation is finished exactly when its json
  names the run's newest checkpoint (a run that trained on after it is evaluated again)."""
  for run in ('omniglot_1shot_maml', 'omniglot_1shot_metadrop'):
    path = os.path.join(ROOT, 'runs', run)
    with open(os.path.join(path, 'eval_test.json')) as f:
      step = json.load(f)['checkpoint_step']
    with open(os.path.join(path, 'ckpt', 'checkpoint')) as f:
      newest = f.readline()
    assert (f'ckpt-{step}"' in newest) == finished(os.path.join(path, 'eval_test.json'), 1000)


def test_every_committed_run_checkpoint_resolves():
  """ckpt/checkpoint of each committed run names a checkpoint that exists. Seven 5-way learner
  runs once named "../../../../ckpt-1000": train.py and evaluate.py still restored the newest
  checkpoint on disk, but TensorFlow logged an error and tf.train.latest_checkpoint (what other
  tools read) returned None."""
  dirs = glob.glob(os.path.join(ROOT, 'runs', '**', 'ckpt'), recursive=True)
  assert dirs
  unresolved = [d for d in dirs if not tf.train.latest_checkpoint(d)]
  assert not unresolved


@pytest.mark.slow
def test_reevaluate_recomputes_a_result_and_names_a_missing_checkpoint(tmp_path):
  from metadrop_tf.evaluation import eval_lib  # pylint: disable=g-import-not-at-top
  config, savedir = helpers.saved_run(tmp_path, n_test_iters=3)
  eval_lib.run(config, savedir, progress=False, mc_samples=2)
  result = os.path.join(savedir, 'eval_test.json')
  with open(result) as f:
    missing = dict(json.load(f), checkpoint=os.path.join(savedir, 'ckpt', 'ckpt-999'))
  with open(os.path.join(savedir, 'eval_missing.json'), 'w') as f:
    json.dump(missing, f)
  done = subprocess.run([sys.executable, os.path.join(ROOT, 'runs', 'reevaluate.py'),
                         '--episodes=2', result, os.path.join(savedir, 'eval_missing.json')],
                        capture_output=True, text=True, check=False, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  missing_line, result_line = done.stdout.splitlines()  # in the order of their paths
  assert result_line == f'{result}: 2/2 episodes equal'
  assert missing_line.startswith(f'{savedir}/eval_missing.json: not re-evaluated: ')
  assert 'ckpt-999' in missing_line and 'Traceback' not in done.stderr


def test_split_difficulty_summary_by_hand():
  """Two test characters (classes 0-3 and 4-7), two tasks of two classes, Q = 5 queries."""
  characters, train = ['A/c3', 'C/c1'], ['A/c1', 'A/c2', 'B/c1']
  classes = np.array([[0, 4], [1, 5]])
  accuracies = np.array([[1.0, 0.6], [0.6, 0.4]])
  got = split_difficulty.summarize(classes, accuracies, characters, train, queries=5)
  per_char = np.array([0.8, 0.5])  # A/c3: (1.0 + 0.6) / 2; C/c1: (0.6 + 0.4) / 2
  true_var = np.var(per_char, ddof=1) - np.mean(per_char * (1 - per_char) / (5 * 2))
  assert got['episodes'] == 2 and got['characters_seen'] == 2 and got['all_characters'] == 5
  assert got['accuracy'] == pytest.approx(0.65)
  assert got['character_sd_corrected'] == pytest.approx(np.sqrt(true_var))
  assert got['split_difference_sd'] == pytest.approx(np.sqrt(2 * true_var / 2 * 3 / 4))
  assert got['rotation_accuracy'][:2] == pytest.approx([0.8, 0.5])
  assert got['rotation_accuracy'][2:] == [None, None]  # no task held those classes
  assert got['hardest_alphabet'] == ['C', pytest.approx(0.5)]
  assert got['easiest_alphabet'] == ['A', pytest.approx(0.8)]
  # A's share of characters in meta-train 2/3, C's 0: accuracy rises with it.
  assert got['alphabet_train_share_vs_accuracy_r'] == pytest.approx(1.0)


@pytest.mark.slow
def test_split_difficulty_checks_its_episodes_against_the_result(tmp_path):
  from metadrop_tf.evaluation import eval_lib  # pylint: disable=g-import-not-at-top
  config, savedir = helpers.saved_run(tmp_path, n_test_iters=3, maml=True)
  eval_lib.run(config, savedir, progress=False)  # tiny shards: 2 test characters, 8 classes
  names = {'train': ['A/c1', 'A/c2', 'B/c1'], 'test': ['A/c3', 'B/c2']}
  with open(os.path.join(config.resolved_data_dir, 'splits.json'), 'w') as f:
    json.dump(names, f)
  result = os.path.join(savedir, 'eval_test.json')
  command = [sys.executable, os.path.join(ROOT, 'runs', 'split_difficulty.py'), result]
  done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  with open(os.path.join(savedir, 'split_difficulty.json')) as f:
    written = json.load(f)
  assert written['summary']['episodes'] == 3 and done.stdout.startswith(savedir)
  assert sum(c['appearances'] for c in written['per_class']) == 3 * config.way
  assert written['episodes_equal_to_result'] == 3
  with open(result) as f:
    changed = json.load(f)
  changed['per_episode_accuracy'][1] += 0.5  # 2 of 3 equal: not the same episodes
  with open(result, 'w') as f:
    json.dump(changed, f)
  # The check itself, in this process (the program prints this message and exits 1).
  with pytest.raises(ValueError, match='only 2 of the 3 re-evaluated episodes'):
    split_difficulty.class_accuracies(result, 0)


FAKE_EVALUATE = """#!/bin/bash
if [ "$1" != evaluate.py ]; then exec {python} "$@"; fi
index=$(echo "$TF_CONFIG" | \\
        {python} -c "import json, sys; print(json.load(sys.stdin)['task']['index'])")
if [ "$index" = "$FAIL" ]; then echo "worker $index failed"; exit 3; fi
if [ "$DEAF" = 1 ]; then trap 'echo "worker $index ignores SIGTERM"' TERM
else trap 'echo "worker $index stopped"; exit 143' TERM; fi
for _ in 1 2; do sleep "$SLEEP" & wait $!; done  # a trapped signal ends one wait
echo "worker $index done"
"""


@pytest.mark.parametrize('fail,deaf', [('0', '0'), ('1', '0'), ('1', '1'), ('none', '0')])
def test_evaluate_on_workers_stops_the_peers_of_a_failed_worker(tmp_path, fail, deaf):
  """runs/table1_further.sh's evaluate_on_workers with a stand-in `python` that fails as worker
  FAIL: the others get SIGTERM at once (not after a collective's timeout), and SIGKILL after
  GRACE seconds if they go on (DEAF, as a process blocked in a TF op would); the function
  returns 1. With no failure it waits for every worker and returns 0."""
  fake = tmp_path / 'bin' / 'python'
  fake.parent.mkdir()
  fake.write_text(FAKE_EVALUATE.format(python=sys.executable))
  fake.chmod(0o755)
  (tmp_path / 'runs' / 'x').mkdir(parents=True)
  script = os.path.join(ROOT, 'runs', 'table1_further.sh')
  command = (f'source <(sed -n "/^evaluate_on_workers()/,/^}}/p" {script}); WORKERS=2; '
             'PORT=1; evaluate_on_workers x')
  env = dict(os.environ, PATH=f'{fake.parent}:{os.environ["PATH"]}', FAIL=fail, DEAF=deaf,
             GRACE='2', SLEEP='1' if fail == 'none' else '120')
  done = subprocess.run(['bash', '-c', command], cwd=tmp_path, env=env, check=False, timeout=60)
  logs = [(tmp_path / 'runs' / 'x' / name).read_text().strip()
          for name in ('evaluate.out', 'evaluate.worker1.out')]
  if fail == 'none':
    assert done.returncode == 0 and logs == ['worker 0 done', 'worker 1 done']
  else:
    other = 1 - int(fail)
    assert done.returncode == 1 and logs[int(fail)] == f'worker {fail} failed'
    # A deaf worker logs the SIGTERM and is then killed before it could log 'done'.
    assert logs[other] == f'worker {other} ' + ('ignores SIGTERM' if deaf == '1' else 'stopped')
