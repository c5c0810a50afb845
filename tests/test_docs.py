"""The docs: results tables equal what docs/tables.py generates from runs/; a short README."""

import importlib.util
import json
import os
import shutil
import statistics

import pytest

from helpers import REPO


def _tables():
  spec = importlib.util.spec_from_file_location('tables', os.path.join(REPO, 'docs', 'tables.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_every_results_table_equals_its_regeneration():
  assert _tables().main(['--check']) == 0


def test_every_table_is_used_and_every_marker_is_known():
  tables = _tables()
  text = ''.join(open(path).read() for path in tables.DOCS)
  for name in tables.TABLES:
    assert f'<!-- table:{name} -->' in text, name
  for path in tables.DOCS:
    tables.render(open(path).read(), path)  # KeyError on an unknown name


def test_a_changed_result_makes_the_check_fail(tmp_path, monkeypatch, capsys):
  tables = _tables()
  runs = tmp_path / 'runs'
  shutil.copytree(os.path.join(REPO, 'runs', 'omniglot_1shot_maml'), runs / 'omniglot_1shot_maml',
                  ignore=shutil.ignore_patterns('ckpt', 'tb'))
  path = runs / 'omniglot_1shot_maml' / 'eval_test.json'
  result = json.loads(path.read_text())
  doc = tmp_path / 'page.md'
  doc.write_text('<!-- table:table1 -->\n<!-- /table:table1 -->\n')
  monkeypatch.setattr(tables, 'RUNS', str(runs))
  monkeypatch.setattr(tables, 'DOCS', [str(doc)])
  monkeypatch.setattr(tables, 'REPO', str(tmp_path))
  assert tables.main([]) == 0
  assert f"{result['accuracy']:.2f} ± {result['ci95']:.2f}" in doc.read_text()
  assert tables.main(['--check']) == 0
  result['accuracy'] += 1
  path.write_text(json.dumps(result))
  assert tables.main(['--check']) == 1
  assert 'page.md' in capsys.readouterr().err


def test_monitoring_reads_both_wordings_and_counts_a_repeated_iteration_once(tmp_path,
                                                                            monkeypatch):
  tables = _tables()
  run = tmp_path / 'omniglot_1shot_maml'
  run.mkdir()
  (run / 'train.log').write_text(
      '2026-11-22 05:16:00 eval test | step 500 | loss 0.64 acc 90.00 +- 1.13 %\n'
      '2026-11-22 05:17:00 train | step 550 | 0.9 it/s | loss 0.5 acc 0.9\n'
      '2026-11-22 06:16:00 eval test | step 1000 | loss 0.48 acc 91.00 +- 0.80 %\n'
      '2026-11-23 07:00:00 eval test | iteration 1000 | loss 0.47 acc 93.00 +- 0.80 %\n'
      '2026-11-23 08:00:00 eval test | iteration 3000 | loss 0.40 acc 95.00 +- 0.70 %\n')
  (run / 'config.json').write_text(json.dumps({'n_train_iters': 4000}))
  (run / 'ckpt').mkdir()
  (run / 'ckpt' / 'checkpoint').write_text('model_checkpoint_path: "ckpt-3100"\n')
  monkeypatch.setattr(tables, 'RUNS', str(tmp_path))
  assert tables.monitor('omniglot_1shot_maml') == {500: 90.0, 1000: 93.0, 3000: 95.0}
  assert tables.monitoring()[2:] == ['| 1-2500 | 91.50 (90.00-93.00) |',
                                     '| 2501-5000 | 95.00 (95.00-95.00) |']
  assert tables.long_runs()[2] == '| MAML 1-shot | 3100 | 4000 | 95.00 at 3000 |'
  assert tables.long_runs()[3] == '| Meta Dropout 1-shot, continued | not started | | |'


def test_unknown_table_names_the_file():
  with pytest.raises(KeyError, match='page.md'):
    _tables().render('<!-- table:nope -->\n<!-- /table:nope -->', 'page.md')


def test_readme_is_a_front_page():
  with open(os.path.join(REPO, 'README.md')) as f:
    assert len(f.read().splitlines()) <= 200


def test_paired_differences_are_taken_episode_by_episode_on_the_same_episodes(tmp_path,
                                                                               monkeypatch):
  tables = _tables()
  def write(run, name, step, seed, per_episode):
    (tmp_path / run).mkdir(exist_ok=True)
    (tmp_path / run / f'{name}.json').write_text(json.dumps(
        {'checkpoint_step': step, 'seed': seed, 'per_episode_accuracy': per_episode}))
  write('base', 'eval_test', 10, 0, [0.90, 0.80, 0.70, 0.60])
  write('other', 'eval_test', 10, 0, [0.95, 0.80, 0.65, 0.70])  # +5, 0, -5, +10 points
  write('other_seed', 'eval_test', 10, 1, [0.95, 0.80, 0.65, 0.70])
  monkeypatch.setattr(tables, 'RUNS', str(tmp_path))
  lines = tables.paired(((('other', 'eval_test'), ('base', 'eval_test')),
                         (('other_seed', 'eval_test'), ('base', 'eval_test'))), (10, 20))()
  ci = 1.96 * statistics.pstdev([5, 0, -5, 10]) / 2
  assert lines[2] == (f'| `other`, eval_test | `base`, eval_test | +2.50 ± {ci:.2f} (50 / 25) '
                      '| no paired result |')
  assert lines[3].count('no paired result') == 2  # other test episodes: nothing to pair


def test_budget_pairs_evaluations_of_one_run_and_ends_with_the_papers(tmp_path, monkeypatch):
  tables = _tables()
  run = tmp_path / 'run'
  run.mkdir()
  def write(name, step, seed, per_episode):
    (run / f'{name}.json').write_text(json.dumps(
        {'checkpoint_step': step, 'seed': seed, 'per_episode_accuracy': per_episode,
         'accuracy': 100 * statistics.mean(per_episode), 'ci95': 0.0, 'n_episodes':
         len(per_episode), 'mc_samples': 1, 'commit': 'abcdef0123'}))
  write('eval_test.step10', 10, 0, [0.90, 0.80, 0.70, 0.60])
  write('eval_test.step20', 20, 0, [0.95, 0.80, 0.65, 0.70])  # +5, 0, -5, +10 points
  write('eval_test', 30, 1, [0.95, 0.80, 0.65, 0.70])  # other episodes: nothing to pair
  monkeypatch.setattr(tables, 'RUNS', str(tmp_path))
  lines = tables.budget('run', 'MAML', 1)()
  ci = 1.96 * statistics.pstdev([5, 0, -5, 10]) / 2
  assert [line.split(' | ')[0] for line in lines[2:]] == [
      '| 10', '| 20', '| 30', '| 60000, paper', '| 60000, reference code re-run']
  assert lines[2].endswith('`abcdef0` |  |')
  assert lines[3].endswith(f'| +2.50 ± {ci:.2f} (50 / 25) |')
  assert lines[4].endswith('| no paired result |')
  # the 5-shot column of the paper's and the reference re-run's MAML rows
  assert lines[5].startswith('| 60000, paper | 98.38 ± 0.07 | 1000 × 1 |')
  assert lines[6].startswith('| 60000, reference code re-run | 98.14 ± 0.07 | 1000 × 1 |')
  # paired_steps pairs any two evaluations; a missing one or other episodes pair nothing
  steps = tables.paired_steps(((('run', 20), ('run', 10)), (('run', 30), ('run', 20)),
                               (('run', 40), ('run', 10))))()
  assert steps[2:] == [f'| `run`, 20 | `run`, 10 | +2.50 ± {ci:.2f} (50 / 25) |',
                       '| `run`, 30 | `run`, 20 | no paired result |',
                       '| `run`, 40 | `run`, 10 | no paired result |']
