"""Figures of the reference (optional extra `plots`: matplotlib, scikit-learn).

Decision-boundary plots from export_lib's visualization dump, the learned multiplicative
noise on one input image, robustness curves, and regression curves (sinusoid).
"""

import os

import matplotlib

matplotlib.use('Agg')

import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from sklearn.manifold import TSNE  # pylint: disable=g-import-not-at-top,wrong-import-position

COLORS = ('tab:blue', 'tab:red')


def boundary_coordinates(features: np.ndarray, kernel: np.ndarray,
                         bias: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
  """(x, boundary): projections of features [n, F] on the unit normal of the 2-way boundary,
  and where the boundary lies on that axis, (b1 - b0) / ||w0 - w1||."""
  normal = kernel[:, 0] - kernel[:, 1]
  norm = np.linalg.norm(normal) + 1e-12
  return features @ normal / norm, (bias[1] - bias[0]) / norm, normal / norm


def plot_step(dump: dict, episode: int, step: int, path: str, seed: int = 0) -> str:
  """One PNG: support, perturbed support and query of one episode at one inner step."""
  kernel, bias = dump['dense_kernel'][episode, step], dump['dense_bias'][episode, step]
  support = dump['support_features'][episode, step]
  query = dump['query_features'][episode, step]
  perturbed = dump['perturbed_features'][episode, step].reshape(-1, support.shape[-1])
  groups = [('support', support, dump['support_labels'], 'o', 80),
            ('perturbed support', perturbed,
             np.tile(dump['support_labels'], len(dump['perturbed_features'][episode, step])),
             '.', 12),
            ('query', query, dump['query_labels'], 'x', 30)]
  everything = np.concatenate([g[1] for g in groups if len(g[1])])
  x, boundary, unit = boundary_coordinates(everything, kernel, bias)
  remainder = everything - np.outer(everything @ unit, unit)
  perplexity = max(2.0, min(30.0, (len(everything) - 1) / 3))
  y = TSNE(n_components=1, perplexity=perplexity, init='random',
           random_state=seed).fit_transform(remainder)[:, 0]
  fig, ax = plt.subplots(figsize=(5, 4))
  start = 0
  for name, feats, labels, marker, size in groups:
    for cls in (0, 1):
      rows = start + np.flatnonzero(labels == cls)
      if len(rows):
        ax.scatter(x[rows], y[rows], c=COLORS[cls], marker=marker, s=size,
                   label=f'{name}, class {cls}', alpha=0.5 if marker == '.' else 0.9)
    start += len(feats)
  ax.axvline(boundary, color='k', linestyle='--', label='decision boundary')
  ax.set_xlabel('projection on the boundary normal')
  ax.set_ylabel('1-D t-SNE of the rest')
  ax.set_title(f'episode {episode}, inner step {step}')
  ax.legend(fontsize=6, loc='best')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_boundaries(dump: dict, out_dir: str, episodes: int | None = None) -> list[str]:
  """One PNG per episode and inner step; returns the paths."""
  os.makedirs(out_dir, exist_ok=True)
  n_episodes, n_steps = dump['support_features'].shape[:2]
  return [plot_step(dump, e, s, os.path.join(out_dir, f'episode{e}_step{s}.png'))
          for e in range(episodes or n_episodes) for s in range(n_steps)]


def plot_noise(block_outputs: list, path: str) -> str:
  """Grid of channel-mean feature maps: rows are conv blocks, column 0 the deterministic
  forward and the others noise samples. block_outputs[col][block]: [H, W, C] arrays."""
  n_cols, n_rows = len(block_outputs), len(block_outputs[0])
  fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.6 * n_rows), squeeze=False)
  for col, outputs in enumerate(block_outputs):
    for row, fmap in enumerate(outputs):
      ax = axes[row, col]
      ax.imshow(np.asarray(fmap).mean(axis=-1), cmap='viridis')
      ax.set_xticks([])
      ax.set_yticks([])
      if row == 0:
        ax.set_title('deterministic' if col == 0 else f'sample {col}', fontsize=7)
      if col == 0:
        ax.set_ylabel(f'block {row}', fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_robustness(results: dict, path: str, title: str = '') -> str:
  """Accuracy against attack radius, one line per run (the paper's robustness panels).

  results: label -> an eval_<split>_pgd_<norm>.json dict (clean accuracy at eps 0, then each
  attacked eps with its 95% interval as an error bar).
  """
  fig, ax = plt.subplots(figsize=(4.5, 3.5))
  norms = set()
  for label, result in results.items():
    eps = [0.0] + [row['eps'] for row in result['attacked']]
    acc = [result['accuracy']] + [row['accuracy'] for row in result['attacked']]
    ci = [result['ci95']] + [row['ci95'] for row in result['attacked']]
    ax.errorbar(eps, acc, yerr=ci, marker='o', markersize=3, capsize=2, label=label)
    norms.add(result['attack']['norm'])
  ax.set_xlabel(f"eps ({', '.join(sorted(norms))})")
  ax.set_ylabel('query accuracy (%)')
  ax.set_title(title, fontsize=8)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_regression(dump: dict, path: str, title: str = '') -> str:
  """One panel per task of visualization.regression_dump: the true curve, the support points,
  the prediction before and after adaptation, and (Meta Dropout) noisy forwards of the
  initial state. Returns path."""
  n_tasks = len(dump['true'])
  fig, axes = plt.subplots(1, n_tasks, figsize=(4 * n_tasks, 3.2), squeeze=False)
  x = dump['x']
  for task, ax in enumerate(axes[0]):
    for noisy_index, curve in enumerate(dump['noisy'][task]):
      ax.plot(x, curve, color='tab:gray', alpha=0.35, linewidth=0.8,
              label='noisy forwards (initial)' if noisy_index == 0 else None)
    ax.plot(x, dump['true'][task], color='black', linewidth=1.5, label='true')
    predictions = dump['predictions'][task]
    ax.plot(x, predictions[0], color='tab:blue', linestyle='--', label='before adaptation')
    steps = len(predictions) - 1
    ax.plot(x, predictions[-1], color='tab:red',
            label=f'after {steps} step{"s" if steps != 1 else ""}')
    ax.scatter(dump['support_x'][task], dump['support_y'][task], color='tab:green', zorder=3,
               s=25, label='support')
    ax.set_title(f"A = {dump['amplitude'][task]:.2f}, p = {dump['phase'][task]:.2f}",
                 fontsize=8)
    ax.set_xlabel('x')
  axes[0][0].legend(fontsize=6)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def main(argv: list[str]) -> None:
  """python -m metadrop_tf.export.plots robustness OUT.png LABEL=eval_test_pgd_linf.json ..."""
  import json  # pylint: disable=g-import-not-at-top
  if len(argv) < 3 or argv[0] != 'robustness':
    raise SystemExit(main.__doc__)
  results = {}
  for item in argv[2:]:
    label, _, file_path = item.partition('=')
    with open(file_path) as f:
      results[label] = json.load(f)
  print(plot_robustness(results, argv[1]))


if __name__ == '__main__':
  import sys  # pylint: disable=g-import-not-at-top
  main(sys.argv[1:])
