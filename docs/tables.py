"""Results tables of the docs, generated from the committed eval_*.json files under runs/, the
monitoring lines of the long runs' train.log, and the bench JSON under bench/results/.

  python docs/tables.py           rewrite every table in README.md and docs/*.md
  python docs/tables.py --check   exit 1 (naming the file and table) if one differs

A table lives in a Markdown file between `<!-- table:NAME -->` and `<!-- /table:NAME -->`; the
lines between them are this program's output for NAME (see TABLES). Nothing in a table is typed
by hand: change the results, then rerun this program.
"""

import argparse
import glob
import json
import os
import re
import statistics
import sys
from typing import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = os.path.join(REPO, 'runs')
DOCS = [os.path.join(REPO, 'README.md')] + sorted(glob.glob(os.path.join(REPO, 'docs', '*.md')))

# Lee et al. 2020, Table 1 (accuracy %, 95% interval, 60000 iterations), and the re-run of the
# reference code, as SPEC.md states them: (method, source) -> cells in the order of
# TABLE1_COLUMNS.
PAPER = {
    ('MAML', 'paper'): ('95.23 ± 0.17', '98.38 ± 0.07', '49.58 ± 0.65', '64.55 ± 0.52'),
    ('Meta Dropout', 'paper'): ('96.63 ± 0.13', '98.73 ± 0.06', '51.93 ± 0.67', '67.42 ± 0.52'),
    ('MAML', 'reference code re-run'): ('94.49 ± 0.16', '98.14 ± 0.07', '48.73 ± 0.64',
                                        '65.70 ± 0.52'),
    ('Meta Dropout', 'reference code re-run'): ('96.24 ± 0.14', '98.81 ± 0.06', '51.67 ± 0.64',
                                                '68.12 ± 0.53'),
}
TEST_MC = {'MAML': 1, 'Meta Dropout': 30}  # MC samples of the reference's test protocol
TABLE1_COLUMNS = ('Omniglot 20-way 1-shot', 'Omniglot 20-way 5-shot', 'miniImageNet 5-way 1-shot',
                  'miniImageNet 5-way 5-shot')
TABLE1_RUNS = {  # row: run directory per column (None: no data set on this machine)
    'MAML': ('omniglot_1shot_maml', 'omniglot_5shot_maml', None, None),
    'Meta Dropout': ('omniglot_1shot_metadrop', 'omniglot_5shot_metadrop', None, None),
}
BASELINES = ('maml', 'metadrop', 'fixed_mult', 'info_dropout', 'fixed_add', 'learned_add', 'vib',
             'mixup', 'manifold_mixup')
# The paper's Figure (PGD), read off to about ±2 points: {norm: {row: {radius: accuracy %}}}.
PAPER_PGD = {
    'linf': {'MAML': {0.02: 73, 0.04: 62, 0.06: 42, 0.08: 15, 0.1: 2},
             'Meta Dropout': {0.02: 89, 0.04: 78, 0.06: 69, 0.08: 59, 0.1: 49}},
    'l2': {'MAML': {1: 68, 2: 54, 3: 37, 5: 11}, 'Meta Dropout': {1: 77, 2: 63, 3: 53, 5: 41}},
    'l1': {'MAML': {20: 68, 40: 55, 100: 12}, 'Meta Dropout': {20: 75, 40: 62, 100: 40}},
}
# Config fields that describe the machine or the bookkeeping of a run, not its method.
NOT_METHOD = {'data_dir', 'save_freq', 'log_freq', 'eval_freq', 'eval_batches',
              'n_train_iters', 'n_test_iters', 'intra_op_threads', 'inter_op_threads',
              'keep_checkpoints', 'cpu_devices', 'strategy', 'eval_mc_samp', 'test_mc_chunks',
              'test_metabatch', 'pre_adapt_freq', 'eval_split', 'n_test_mc_samp'}


def _load(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None


def _metric(result: dict) -> str:
  """'91.75 ± 0.21' (accuracy %) or '1.012 ± 0.073' (MSE)."""
  if 'accuracy' in result:
    return f"{result['accuracy']:.2f} ± {result['ci95']:.2f}"
  return f"{result['mse']:.3f} ± {result['ci95']:.3f}"


def _protocol(result: dict) -> str:
  commit = result.get('commit') or '?'
  return (f"{result['checkpoint_step']} it, {result['n_episodes']} ep × "
          f"{result['mc_samples']} MC, `{commit[:7]}`")


def table1() -> list[str]:
  """Table 1: the paper's cells, the reference re-run's and ours (with budget, protocol, commit)."""
  lines = ['| | ' + ' | '.join(TABLE1_COLUMNS) + ' |', '|---' * (len(TABLE1_COLUMNS) + 1) + '|']
  for (method, source), cells in PAPER.items():
    lines.append(f'| {method}, {source} | ' + ' | '.join(cells) + ' |')
  for row, runs in TABLE1_RUNS.items():
    cells = []
    for run in runs:
      result = run and _load(os.path.join(RUNS, run, 'eval_test.json'))
      if run is None:
        cells.append('no data here')
      elif result is None:
        cells.append('not evaluated yet')
      else:
        cells.append(f'{_metric(result)} ({_protocol(result)})')
    lines.append(f'| {row}, metadrop-tf | ' + ' | '.join(cells) + ' |')
  return lines


def evaluations(run: str, name: str = 'eval_test') -> dict[int, dict]:
  """Checkpoint iteration -> result of runs/<run>'s <name>.json and <name>.step*.json
  (name eval_test_seed<S>: on the episodes of seed S, evaluate.py --episode_seed)."""
  paths = glob.glob(os.path.join(RUNS, run, f'{name}.json'))
  paths += glob.glob(os.path.join(RUNS, run, f'{name}.step*.json'))
  return {r['checkpoint_step']: r for r in map(_load, paths)}


def _paired_change(base: dict | None, result: dict | None) -> str:
  """`result` minus `base`, episode by episode on the same test episodes: the mean difference
  of accuracy in points with its 95 % interval (as Table 1's), and the share of episodes better
  / worse (%), e.g. '+0.64 ± 0.17 (56 / 40)'; 'no paired result' when either is missing or
  their episodes differ (another episode seed or count)."""
  if (not base or not result or base.get('seed') != result.get('seed')
      or len(base['per_episode_accuracy']) != len(result['per_episode_accuracy'])):
    return 'no paired result'
  diff = [100 * (y - x) for x, y in zip(base['per_episode_accuracy'],
                                         result['per_episode_accuracy'])]
  ci = 1.96 * statistics.pstdev(diff) / len(diff) ** 0.5
  better, worse = (100 * sum(d > 0 for d in diff) / len(diff),
                   100 * sum(d < 0 for d in diff) / len(diff))
  return f'{statistics.mean(diff):+.2f} ± {ci:.2f} ({better:.0f} / {worse:.0f})'


def budget(run: str, method: str, column: int) -> Callable[[], list[str]]:
  """Accuracy against iterations of one run: eval_test.json and its eval_test.step*.json, each
  with its paired change from the row above (see _paired_change), then the 60000-iteration
  cells of `method` ('MAML', 'Meta Dropout') in Table 1's `column` (paper, reference re-run)."""
  def make() -> list[str]:
    lines = ['| iterations | test accuracy (%) | episodes × MC | commit | paired change from the '
             'row above (points; % episodes better / worse) |', '|---|---|---|---|---|']
    previous = None
    for step, r in sorted(evaluations(run).items()):
      change = _paired_change(previous, r) if previous else ''
      lines.append(f"| {step} | {_metric(r)} | {r['n_episodes']} × "
                   f"{r['mc_samples']} | `{(r.get('commit') or '?')[:7]}` | {change} |")
      previous = r
    for (row_method, source), cells in PAPER.items():
      if row_method == method:
        lines.append(f'| 60000, {source} | {cells[column]} | 1000 × {TEST_MC[method]} |  |  |')
    return lines
  return make


def paired_steps(rows: tuple[tuple[tuple[str, int], tuple[str, int]], ...]
                 ) -> Callable[[], list[str]]:
  """For each ((run, iterations), (base run, base iterations)) of `rows`, the paired change of
  the run's eval_test result at that checkpoint minus the base's, on the same test episodes
  (see _paired_change): steps along one run that rows in between hide from budget's last
  column, or two runs at different budgets."""
  def make() -> list[str]:
    lines = ['| run, iterations | minus run, iterations | paired change (points; % episodes '
             'better / worse) |', '|---|---|---|']
    for (run, step), (base, base_step) in rows:
      change = _paired_change(evaluations(base).get(base_step), evaluations(run).get(step))
      lines.append(f'| `{run}`, {step} | `{base}`, {base_step} | {change} |')
    return lines
  return make


def equal_budget(runs: tuple[tuple[str, str], ...],
                 steps: tuple[int, ...]) -> Callable[[], list[str]]:
  """Runs side by side at the same checkpoints: for each (run, result name, see evaluations),
  accuracy (%) at each of `steps` and their mean (min-max), with the run's seed, meta
  learning rate and Adam epsilon (from its config.json) and the seed of the test episodes."""
  def make() -> list[str]:
    keys = ('seed', 'meta_lr', 'adam_epsilon')
    lines = ['| run | ' + ' | '.join(keys) + ' | test episodes of seed | '
             + ' | '.join(map(str, steps)) + ' | mean (min-max) |',
             '|---' * (len(steps) + len(keys) + 3) + '|']
    for run, name in runs:
      config, found = _load(os.path.join(RUNS, run, 'config.json')) or {}, evaluations(run, name)
      episodes = {r.get('seed', config.get('seed')) for r in found.values()}
      values = [found[s]['accuracy'] for s in steps if s in found]
      cells = [_metric(found[s]) if s in found else 'not evaluated yet' for s in steps]
      mean = (f'{statistics.mean(values):.2f} ({min(values):.2f}-{max(values):.2f})'
              if len(values) == len(steps) else '')
      flags = ' | '.join(str(config.get(k, '?')) for k in keys)
      lines.append(f"| `{run}` | {flags} | {', '.join(map(str, sorted(episodes))) or '?'} | "
                   + ' | '.join(cells) + f' | {mean} |')
    return lines
  return make


def paired(pairs: tuple[tuple[tuple[str, str], tuple[str, str]], ...],
           steps: tuple[int, ...]) -> Callable[[], list[str]]:
  """Each (run, result name) of `pairs` against its base (run, result name) on the same test
  episodes, episode by episode, at each of `steps`: mean difference of accuracy (points, 95 %
  interval as Table 1's) and the share of episodes better / worse (%)."""
  def make() -> list[str]:
    lines = ['| run, result | minus run, result | ' + ' | '.join(map(str, steps)) + ' |',
             '|---' * (len(steps) + 2) + '|']
    for (run, name), (base, base_name) in pairs:
      found, reference = evaluations(run, name), evaluations(base, base_name)
      cells = [_paired_change(reference.get(step), found.get(step)) for step in steps]
      lines.append(f'| `{run}`, {name} | `{base}`, {base_name} | ' + ' | '.join(cells) + ' |')
    return lines
  return make


def _method(config: dict, reference: dict) -> str:
  """The method-defining options in which `config` differs from `reference`'s."""
  changed = sorted(k for k, v in config.items()
                   if k not in NOT_METHOD and reference.get(k) != v)
  return ' '.join(f'`--{k}={config[k]}`' for k in changed) or '(the reference row)'


# A monitoring line of train.log: '... eval test | iteration 500 | loss 0.64 acc 90.13 +- 1.13 %'
# (the runs' older lines say 'step' for the iteration).
MONITOR = re.compile(r'eval \w+ \| (?:step|iteration) (\d+) \| loss \S+ acc ([\d.]+) \+- ')
LONG_RUNS = (('MAML 1-shot', 'omniglot_1shot_maml'),
             ('Meta Dropout 1-shot, continued', 'omniglot_1shot_metadrop_long'),
             ('MAML 5-shot', 'omniglot_5shot_maml'),
             ('Meta Dropout 5-shot', 'omniglot_5shot_metadrop'),
             ('MAML 1-shot, meta_lr 3e-4', 'omniglot_1shot_maml_lr3e-4'))
BLOCK = 2500  # iterations per row of the monitoring table


def monitor(run: str) -> dict[int, float]:
  """Iteration -> monitoring accuracy (%) of runs/<run>/train.log; a resumed run's repeated
  evaluation of an iteration counts once (its last line)."""
  try:
    with open(os.path.join(RUNS, run, 'train.log')) as f:
      return {int(m[1]): float(m[2]) for m in map(MONITOR.search, f) if m}
  except FileNotFoundError:
    return {}


def monitoring() -> list[str]:
  """Per block of BLOCK iterations, the mean (min-max) of each long run's monitoring
  accuracies: the trend and the swing of a run, beside the others'."""
  runs = [(label, monitor(run)) for label, run in LONG_RUNS]
  runs = [(label, accs) for label, accs in runs if accs]
  last = max(max(accs) for _, accs in runs)
  lines = ['| iterations | ' + ' | '.join(label for label, _ in runs) + ' |',
           '|---' * (len(runs) + 1) + '|']
  for start in range(0, last, BLOCK):
    cells = []
    for _, accs in runs:
      block = [a for i, a in sorted(accs.items()) if start < i <= start + BLOCK]
      cells.append(f'{statistics.mean(block):.2f} ({min(block):.2f}-{max(block):.2f})'
                   if block else '')
    lines.append(f'| {start + 1}-{start + BLOCK} | ' + ' | '.join(cells) + ' |')
  return lines


def _last_checkpoint(run: str) -> str:
  """The iteration of runs/<run>/ckpt's newest checkpoint ('ckpt-16100' -> '16100')."""
  try:
    with open(os.path.join(RUNS, run, 'ckpt', 'checkpoint')) as f:
      return re.search(r'model_checkpoint_path: "ckpt-(\d+)"', f.read())[1]
  except (FileNotFoundError, TypeError):
    return 'none'


def long_runs() -> list[str]:
  """Where each long run stands: its newest committed checkpoint, the iterations its config
  trains to, and its newest monitoring accuracy."""
  lines = ['| run | checkpoint | trains to | last monitor (%) |', '|---|---|---|---|']
  for label, run in LONG_RUNS:
    config = _load(os.path.join(RUNS, run, 'config.json'))
    if config is None:
      lines.append(f'| {label} | not started | | |')
      continue
    accs = monitor(run)
    shown = f'{accs[max(accs)]:.2f} at {max(accs)}' if accs else ''
    lines.append(f"| {label} | {_last_checkpoint(run)} | {config['n_train_iters']} | {shown} |")
  return lines


def runs_table(rows: list[tuple[str, str]], reference: str) -> Callable[[], list[str]]:
  """One row per (label, run directory under runs/) with an eval_test.json; the options column
  lists the method options in which the run's config.json differs from the `reference` run's."""
  def make() -> list[str]:
    base = _load(os.path.join(RUNS, reference, 'config.json')) or {}
    lines = [f'| run | options (against `{reference}`) | test | episodes × MC | iterations |'
             ' commit |', '|---|---|---|---|---|---|']
    for label, run in rows:
      result = _load(os.path.join(RUNS, run, 'eval_test.json'))
      if result is None:
        continue
      config = _load(os.path.join(RUNS, run, 'config.json')) or {}
      lines.append(f'| {label} | {_method(config, base)} | '
                   f"{_metric(result)} | {result['n_episodes']} × {result['mc_samples']} | "
                   f"{result['checkpoint_step']} | `{(result.get('commit') or '?')[:7]}` |")
    return lines
  return make


def folder(name: str, reference: str = 'maml') -> Callable[[], list[str]]:
  """runs_table of every run directory in runs/<name>/, against runs/<name>/<reference>."""
  runs = sorted(os.path.basename(os.path.dirname(p))
                for p in glob.glob(os.path.join(RUNS, name, '*', 'eval_test.json')))
  return runs_table([(run, f'{name}/{run}') for run in runs], f'{name}/{reference}')


def robustness(norm: str) -> Callable[[], list[str]]:
  """Clean and attacked accuracy per radius of the two Table 1 runs under PGD in `norm`, the
  paper's figure in brackets where it has the radius."""
  def make() -> list[str]:
    rows = []
    for label, run in zip(TABLE1_RUNS, ('omniglot_1shot_maml', 'omniglot_1shot_metadrop')):
      result = _load(os.path.join(RUNS, run, f'eval_test_pgd_{norm}.json'))
      if result:
        rows.append((label, result))
    if not rows:
      return ['(no result)']
    radii = [a['eps'] for a in rows[0][1]['attacked']]
    lines = ['| run (iterations, episodes) | clean | '
             + ' | '.join(f'{norm} {e:g}' for e in radii)
             + ' |', '|---' * (len(radii) + 2) + '|']
    for label, r in rows:
      paper = PAPER_PGD[norm][label]
      cells = [f"{a['accuracy']:.2f} ± {a['ci95']:.2f}"
               + (f" ({paper[a['eps']]})" if a['eps'] in paper else '') for a in r['attacked']]
      lines.append(f"| {label} ({r['checkpoint_step']}, {r['n_episodes']}) | {_metric(r)} | "
                   + ' | '.join(cells) + ' |')
    return lines
  return make


def sinusoid() -> list[str]:
  """MSE after and before adaptation of every run in runs/sinusoid/."""
  lines = ['| run | K | MSE after adaptation | before | tasks × MC | iterations | commit |',
           '|---|---|---|---|---|---|---|']
  for path in sorted(glob.glob(os.path.join(RUNS, 'sinusoid', '*', 'eval_test.json'))):
    run_dir = os.path.dirname(path)
    r, config = _load(path), _load(os.path.join(run_dir, 'config.json')) or {}
    lines.append(f"| {os.path.basename(run_dir)} | {config.get('shot', '?')} | {_metric(r)} | "
                 f"{r['mse_pre']:.3f} | {r['n_episodes']} × {r['mc_samples']} | "
                 f"{r['checkpoint_step']} | `{(r.get('commit') or '?')[:7]}` |")
  return lines


def serve_load() -> list[str]:
  """bench/serve_load.py's figures, one row per bench/results/serve_load_*.json."""
  lines = ['| model | episodes | requests × clients | requests/s | p50 ms | p90 ms | p99 ms | '
           'failed | batch probe: sequential / 2 threads / one call (s) |',
           '|---|---|---|---|---|---|---|---|---|']
  for path in sorted(glob.glob(os.path.join(REPO, 'bench', 'results', 'serve_load_*.json'))):
    r = _load(path)
    latency, probe = r['latency_ms'], r.get('batch_probe', {})
    probe_cell = (f"{probe['sequential_s']} / {probe['two_threads_s']} / {probe['one_call_s']} "
                  f"({probe['episodes']} episodes)" if probe else '')
    lines.append(f"| {os.path.basename(path)[len('serve_load_'):-len('.json')]} | "
                 f"{r['episode']} | {r['requests']} × {r['clients']} | {r['requests_per_s']} | "
                 f"{latency['p50']} | {latency['p90']} | {latency['p99']} | {r['failed']} | "
                 f"{probe_cell} |")
  return lines


def split_difficulty(run: str) -> Callable[[], list[str]]:
  """runs/split_difficulty.py's summary of <run>/split_difficulty.json, one row per figure."""
  def table() -> list[str]:
    r = _load(os.path.join(RUNS, run, 'split_difficulty.json'))
    if r is None:
      return ['| figure | value |', '|---|---|', '| not computed | |']
    s = r['summary']
    point = lambda x: f'{100 * x:.2f}'
    rotations = ' / '.join(point(a) for a in s['rotation_accuracy'] if a is not None)
    return [
        '| figure | value |', '|---|---|',
        f"| evaluation | `{os.path.relpath(r['checkpoint'], 'runs')}`, first {s['episodes']} "
        f"episodes: {point(s['accuracy'])} % |",
        f"| test characters seen | {s['characters_seen']} of {s['test_characters']}, "
        f"{s['mean_appearances']:.1f} times each on average |",
        f"| re-evaluation against the committed result | {r['episodes_equal_to_result']} of "
        f"{s['episodes']} episodes equal, the others within "
        f"{point(r['largest_difference_to_result'])} points |",
        f"| sd of character accuracies | {point(s['character_sd'])} points observed, "
        f"{point(s['character_sd_corrected'])} without the sampling noise "
        f"({point(s['noise_sd'])}) |",
        f"| sd of the difference to another random split of {s['test_characters']} of the "
        f"{s['all_characters']} characters | {point(s['split_difference_sd'])} points |",
        f'| accuracy by rotation 0 / 90 / 180 / 270° | {rotations} % |',
        f"| alphabets | {s['alphabets']}, sd {point(s['alphabet_sd'])} points: "
        f"{s['hardest_alphabet'][0]} {point(s['hardest_alphabet'][1])} % to "
        f"{s['easiest_alphabet'][0]} {point(s['easiest_alphabet'][1])} % |",
        f"| correlation of an alphabet's share of characters in meta-train with its accuracy | "
        f"r = {s['alphabet_train_share_vs_accuracy_r']:.2f} |",
    ]
  return table


# The MAML 20-way 1-shot runs that compare one flag at a time at 2400-2600 iterations: the
# table's run (seed 0, meta_lr 1e-3, Adam epsilon 1e-7) and one change each, or two.
MAML_1SHOT, MAML_EPS = 'omniglot_1shot_maml', 'omniglot_1shot_maml_eps1e-8'
MAML_SEED1, MAML_LR = 'omniglot_1shot_maml_seed1', 'omniglot_1shot_maml_lr3e-4'
METADROP_1SHOT = 'omniglot_1shot_metadrop'

TABLES: dict[str, Callable[[], list[str]]] = {
    'table1': table1,
    'maml_budget': budget(MAML_1SHOT, 'MAML', 0),
    'maml_budget_steps': paired_steps((((MAML_1SHOT, 20000), (MAML_1SHOT, 10000)),
                                       ((MAML_1SHOT, 30000), (MAML_1SHOT, 20000)),
                                       ((MAML_1SHOT, 30000), (MAML_1SHOT, 10000)))),
    'maml_5shot_budget': budget('omniglot_5shot_maml', 'MAML', 1),
    'long_runs': long_runs,
    'monitoring': monitoring,
    'split_difficulty': split_difficulty(MAML_1SHOT),
    'maml_seed_lr': equal_budget(((MAML_1SHOT, 'eval_test'),
                                  (MAML_EPS, 'eval_test'),
                                  (MAML_SEED1, 'eval_test'),
                                  (MAML_SEED1, 'eval_test_seed0'),
                                  (MAML_LR, 'eval_test')), (2400, 2500, 2600)),
    'maml_seed_lr_paired': paired((((MAML_SEED1, 'eval_test_seed0'), (MAML_1SHOT, 'eval_test')),
                                   ((MAML_LR, 'eval_test'), (MAML_1SHOT, 'eval_test')),
                                   ((MAML_EPS, 'eval_test'), (MAML_1SHOT, 'eval_test')),
                                   ((MAML_LR, 'eval_test'), (MAML_EPS, 'eval_test')),
                                   ((MAML_SEED1, 'eval_test_seed0'), (MAML_EPS, 'eval_test'))),
                                  (2400, 2500, 2600)),
    'maml_lr_budget': budget(MAML_LR, 'MAML', 0),
    'maml_lr_paired': paired_steps((((MAML_LR, 10000), (MAML_LR, 2600)),
                                    ((MAML_LR, 10000), (MAML_1SHOT, 10000)),
                                    ((MAML_LR, 10000), (MAML_1SHOT, 20000)),
                                    ((MAML_LR, 10000), (MAML_1SHOT, 30000)))),
    'methods_paired': paired_steps((((METADROP_1SHOT, 10000), (MAML_1SHOT, 10000)),
                                    ((METADROP_1SHOT, 10000), (MAML_LR, 10000)),
                                    ((METADROP_1SHOT, 10000), (MAML_1SHOT, 30000)),
                                    (('omniglot_5shot_metadrop', 5000),
                                     ('omniglot_5shot_maml', 5000)))),
    'learners_5w1s': folder('learners_omniglot_5w1s'),
    'baselines_5w1s': runs_table([(n, f'learners_omniglot_5w1s/{n}') for n in BASELINES],
                                 'learners_omniglot_5w1s/maml'),
    'baselines_20w1s': folder('learners_omniglot_20w1s'),
    'bn_modes_5w1s': runs_table(
        [('maml, transductive', 'learners_omniglot_5w1s/maml'),
         ('maml, inductive', 'bn_modes_omniglot_5w1s/maml_inductive'),
         ('metadrop, transductive', 'learners_omniglot_5w1s/metadrop'),
         ('metadrop, inductive', 'bn_modes_omniglot_5w1s/metadrop_inductive')],
        'learners_omniglot_5w1s/maml'),
    'backbones_5w1s': runs_table(
        [('resnet12, 32-64-128-256', 'resnet12_omniglot_5w1s/resnet12_w32'),
         ('conv4', 'learners_omniglot_5w1s/maml'),
         ('resnet12, 64-128-256-512', 'resnet12_omniglot_5w1s/resnet12'),
         ('conv4', 'resnet12_omniglot_5w1s/conv4')], 'learners_omniglot_5w1s/maml'),
    'bf16': folder('bf16_check', reference='float32'),
    'sinusoid': sinusoid,
    'serve_load': serve_load,
    'pgd_linf': robustness('linf'),
    'pgd_l2': robustness('l2'),
    'pgd_l1': robustness('l1'),
}


def render(text: str, path: str = '') -> str:
  """`text` with every marked table replaced by its generated lines (KeyError: unknown name)."""
  out, lines, i = [], text.split('\n'), 0
  while i < len(lines):
    line = lines[i]
    out.append(line)
    if line.startswith('<!-- table:') and line.endswith(' -->'):
      name = line[len('<!-- table:'):-len(' -->')]
      if name not in TABLES:
        raise KeyError(f'{path}: unknown table {name!r} (known: {", ".join(TABLES)})')
      end = lines.index(f'<!-- /table:{name} -->', i)
      out.extend(TABLES[name]())
      i = end
      continue
    i += 1
  return '\n'.join(out)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--check', action='store_true', help='compare, do not write')
  args = parser.parse_args(argv)
  stale = []
  for path in DOCS:
    with open(path) as f:
      text = f.read()
    new = render(text, path)
    if new != text:
      stale.append(os.path.relpath(path, REPO))
      if not args.check:
        with open(path, 'w') as f:
          f.write(new)
  if args.check and stale:
    print(f'tables differ from runs/ in: {", ".join(stale)}; run: python docs/tables.py',
          file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
