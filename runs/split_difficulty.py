"""How far the choice of test characters can move an Omniglot result: one evaluation's
per-class query accuracies, by character, rotation and alphabet.

  python runs/split_difficulty.py RESULT_JSON [--episodes=N] [--threads=1]

Re-evaluates the first N episodes (default: all of them) of a committed Omniglot evaluation
from the checkpoint it names, recording each task class's query accuracy, and checks
that the re-evaluated episodes equal the committed ones (exit 1 when fewer than 90 % do:
another CPU may flip a near tie; more means another checkpoint or other episodes). Writes
`split_difficulty.json` beside RESULT_JSON: every test class (its character, rotation,
appearances, accuracy) and a summary (docs/reproducing.md renders it):

- the spread of the characters' accuracies, less the part that is sampling noise (each class
  is seen in a few tasks of Q queries each: binomial variance p(1-p)/(Q * appearances));
- from it, the standard deviation of the difference between this test set's mean and that of
  another random split of the same size: sqrt(2 var / n * (N - n) / (N - 1)) for n test
  characters out of N (two independent draws without replacement). The model is held fixed:
  another split would also change what it trains on, which this does not measure;
- the accuracy per rotation, and per alphabet with the Pearson correlation between an
  alphabet's share of characters in meta-train and its test accuracy (a split that holds
  out whole alphabets would put that share at 0).
"""

import json
import os
import sys

from absl import app
from absl import flags
import numpy as np

# This checkout's package, not whichever one is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from metadrop_tf.cli import quiet  # noqa: E402  pylint: disable=wrong-import-position

FLAGS = flags.FLAGS

OUT_NAME = 'split_difficulty.json'
# Another CPU can flip a near-tie argmax: a few episodes may differ by a query from the
# committed ones; fewer equal than this share means another checkpoint or other episodes.
MIN_EQUAL = 0.9
ROTATIONS = 4  # class 4*i + k of a split is its character i rotated k*90 degrees (splits.json)


def class_accuracies(path: str, episodes: int) -> tuple:
  """(classes [E, N] int, accuracies [E, N], result) of the first `episodes` tasks of the
  evaluation at path, re-evaluated from its checkpoint; `result` is the committed one with
  'episodes_equal' (re-evaluated task accuracies equal to the committed) and
  'largest_difference'. Raises ValueError when fewer than MIN_EQUAL of them are equal."""
  from metadrop_tf.episodes import sampling  # pylint: disable=g-import-not-at-top
  from metadrop_tf.evaluation import eval_lib  # pylint: disable=g-import-not-at-top
  from metadrop_tf.evaluation import per_class  # pylint: disable=g-import-not-at-top
  from metadrop_tf.evaluation import results  # pylint: disable=g-import-not-at-top
  result, config, learner, images = results.restore(path)
  split = result.get('split', 'test')
  episodes = min(episodes or result['n_episodes'], result['n_episodes'])
  step = eval_lib.make_eval_step(learner, result['mc_samples'], config.seed,
                                 extra=per_class.class_accuracies)
  outputs = eval_lib.evaluate(learner, images, config, split, episodes, result['mc_samples'],
                              progress=False, eval_step=step, keep_outputs=True)['outputs']
  accuracies, by_task = outputs['acc_class'], outputs['acc']
  if not np.allclose(accuracies.mean(axis=1), by_task, rtol=0, atol=1e-6):
    raise ValueError(f'{path}: the class accuracies do not average to the task accuracies')
  committed = np.asarray(result['per_episode_accuracy'][:episodes])
  equal = int(np.sum(np.isclose(by_task, committed, rtol=0, atol=1e-6)))
  if equal < MIN_EQUAL * episodes:
    raise ValueError(f'{path}: only {equal} of the {episodes} re-evaluated episodes equal the '
                     'committed ones: not the same checkpoint or episodes')
  result = dict(result, episodes_equal=equal, largest_difference=float(
      np.max(np.abs(by_task - committed))))
  sampler = sampling.make_sampler(config, split, images)
  classes = np.stack([sampler.task_indices(i)[0] for i in range(episodes)])
  return classes, accuracies, result


def class_totals(classes, accuracies, n_classes: int) -> tuple:
  """(appearances [n_classes], summed accuracy [n_classes]) of each class over the tasks."""
  seen = np.bincount(classes.ravel(), minlength=n_classes)
  return seen, np.bincount(classes.ravel(), weights=accuracies.ravel(), minlength=n_classes)


def _pearson(x, y) -> float:
  return float(np.corrcoef(x, y)[0, 1])


def summarize(classes, accuracies, characters: list, train_characters: list,
              queries: int) -> dict:
  """The summary described in the module docstring.

  classes, accuracies: [E, N] test class indices and their query accuracies per task;
  characters: the test split's characters, 'Alphabet/characterNN', class 4*i + k = i;
  train_characters: meta-train's; queries: Q, queries per class and task.
  """
  seen, total = class_totals(classes, accuracies, ROTATIONS * len(characters))
  per_char_seen = seen.reshape(-1, ROTATIONS).sum(axis=1)
  per_char = total.reshape(-1, ROTATIONS).sum(axis=1) / np.maximum(per_char_seen, 1)
  used = per_char_seen > 0
  p, m = per_char[used], per_char_seen[used]
  observed_var = float(np.var(p, ddof=1))
  noise_var = float(np.mean(p * (1 - p) / (queries * m)))
  true_var = max(observed_var - noise_var, 0.0)
  n, population = len(characters), len(characters) + len(train_characters)
  split_sd = float(np.sqrt(2 * true_var / n * (population - n) / (population - 1)))
  rotation = [float(total[k::ROTATIONS].sum() / seen[k::ROTATIONS].sum())
              if seen[k::ROTATIONS].any() else None for k in range(ROTATIONS)]
  alphabet_of = lambda name: name.split('/')[0]
  alphabets = sorted({alphabet_of(c) for c in characters})
  in_train = {a: 0 for a in alphabets}
  for name in train_characters:
    if alphabet_of(name) in in_train:
      in_train[alphabet_of(name)] += 1
  by_alphabet = {a: [] for a in alphabets}
  for name, accuracy, ok in zip(characters, per_char, used):
    if ok:
      by_alphabet[alphabet_of(name)].append(accuracy)
  alphabet_acc = {a: float(np.mean(v)) for a, v in by_alphabet.items() if v}
  share = {a: in_train[a] / (in_train[a] + len(by_alphabet[a])) for a in alphabet_acc}
  names = sorted(alphabet_acc, key=alphabet_acc.get)
  return {
      'episodes': int(classes.shape[0]), 'test_characters': n,
      'characters_seen': int(used.sum()), 'all_characters': population,
      'mean_appearances': float(m.mean()), 'accuracy': float(accuracies.mean()),
      'character_sd': float(np.sqrt(observed_var)), 'noise_sd': float(np.sqrt(noise_var)),
      'character_sd_corrected': float(np.sqrt(true_var)), 'split_difference_sd': split_sd,
      'rotation_accuracy': rotation, 'alphabets': len(alphabet_acc),
      'alphabet_sd': float(np.std(list(alphabet_acc.values()), ddof=1)),
      'hardest_alphabet': [names[0], alphabet_acc[names[0]]],
      'easiest_alphabet': [names[-1], alphabet_acc[names[-1]]],
      'alphabet_train_share_vs_accuracy_r': _pearson([share[a] for a in names],
                                                     [alphabet_acc[a] for a in names]),
  }


def main(argv):
  if len(argv) != 2:
    print('usage: python runs/split_difficulty.py RESULT_JSON [--episodes=N]', file=sys.stderr)
    return 2
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from metadrop_tf import files  # pylint: disable=g-import-not-at-top
  from metadrop_tf.runtime import checkpoints  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  path = argv[1]
  try:
    classes, accuracies, result = class_accuracies(path, FLAGS.episodes)
  except ValueError as e:
    print(e, file=sys.stderr)
    return 1
  config = checkpoints.read_config(os.path.dirname(path))
  with open(os.path.join(config.resolved_data_dir, 'splits.json')) as f:
    splits = json.load(f)
  summary = summarize(classes, accuracies, splits['test'], splits['train'], config.query)
  seen, total = class_totals(classes, accuracies, ROTATIONS * len(splits['test']))
  per_class = [{'class': c, 'character': splits['test'][c // ROTATIONS],
                'rotation': c % ROTATIONS, 'appearances': int(seen[c]),
                'accuracy': float(total[c] / seen[c])} for c in range(len(seen)) if seen[c]]
  out = os.path.join(os.path.dirname(path), OUT_NAME)
  files.write_json(out, {'result': path, 'checkpoint': result['checkpoint'],
                         'episodes_equal_to_result': result['episodes_equal'],
                         'largest_difference_to_result': result['largest_difference'],
                         'summary': summary, 'per_class': per_class})
  print(f'{out}: {summary["episodes"]} episodes ({result["episodes_equal"]} equal to the '
        f'committed ones), accuracy {100 * summary["accuracy"]:.2f} %, '
        f'characters sd {100 * summary["character_sd_corrected"]:.2f} points, another random '
        f'split would differ by sd {100 * summary["split_difference_sd"]:.2f} points')
  return 0


if __name__ == '__main__':  # flags only here: tests import the module beside other flags
  flags.DEFINE_integer('episodes', 0, 'Episodes re-evaluated (their first ones); 0: all.')
  flags.DEFINE_integer('threads', 1, 'Intra-op threads.')
  quiet.start()
  app.run(lambda argv: sys.exit(main(argv)))
