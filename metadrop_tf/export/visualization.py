"""The data of the figures (export.py --visualize, plots.py): the reference's visualization
dump (features and 2-way decision boundary at every inner step), the sinusoid curves, and
the noise maps of a network's blocks."""

import os

import numpy as np
import tensorflow as tf

from metadrop_tf import config as config_lib
from metadrop_tf import files
from metadrop_tf import seeds as seeds_lib
from metadrop_tf.episodes import data
from metadrop_tf.episodes import sampling
from metadrop_tf.episodes import sinusoid
from metadrop_tf.export import export_lib
from metadrop_tf.learners import base as learner_base
from metadrop_tf.nets import network as network_lib

VIS_EPISODES = 10
VIS_SAMPLES = 10


def visualization_dump(learner: learner_base.Learner, config: config_lib.Config,
                       test_images: data.Images) -> dict:
  """Per-inner-step features and 2-column heads of the reference's 10 visualization episodes.

  Episode c (c = 0..9) is 2-way on test classes (c, c + 5): the first K instances are the
  support, the next Q the query; the dense head keeps its first 2 columns. Returns arrays
  with E = 10 episodes and S + 1 steps: support_features [E, S+1, 2K, F], query_features
  [E, S+1, 2Q, F], perturbed_features [E, S+1, 10, 2K, F] (empty without noise),
  dense_kernel [E, S+1, F, 2], dense_bias [E, S+1, 2].
  """
  k, q = config.shot, config.query
  if len(test_images) < VIS_EPISODES + 5:
    raise data.DataError(f'the visualization needs {VIS_EPISODES + 5} test classes; the test '
                         f'split has {len(test_images)}')
  model = learner.network
  labels = lambda per_class: tf.one_hot(np.repeat([0, 1], per_class), 2)
  out = {key: [] for key in ('support_features', 'query_features', 'perturbed_features',
                             'dense_kernel', 'dense_bias')}
  n_perturbed = VIS_SAMPLES if learner.noisy else 0
  for c in range(VIS_EPISODES):
    pair = sampling.to_float(test_images[[c, c + 5]])  # [2, instances, H, W, C]
    support = tf.reshape(pair[:, :k], [2 * k, *config.image_shape])
    query = tf.reshape(pair[:, k:k + q], [2 * q, *config.image_shape])
    theta0 = learner.initial_state(2)
    for name in model.head_names:  # the head's first 2 columns
      theta0[name] = theta0[name][..., :2]
    seed = tf.constant([config.seed, 100 + c], tf.int32)
    thetas = learner.adapt(support, labels(k), seed, config.test_mc_samples, start=theta0)
    rows = {key: [] for key in out}
    for step, theta in enumerate(thetas):
      rows['support_features'].append(model.features(support, theta))
      rows['query_features'].append(model.features(query, theta))
      rows['perturbed_features'].append(tf.stack([
          model.features(support, theta, sample=True,
                         seed=seeds_lib.fold_seed(seed, 1000 + step, s))
          for s in range(n_perturbed)]) if n_perturbed else
          tf.zeros([0, 2 * k, model.feature_dim], model.dtype))
      rows['dense_kernel'].append(theta['dense_kernel'])
      rows['dense_bias'].append(theta['dense_bias'])
    for key, values in rows.items():
      out[key].append(np.stack([v.numpy() for v in values]))
  dump = {key: np.stack(values) for key, values in out.items()}
  dump['support_labels'] = np.repeat([0, 1], k)
  dump['query_labels'] = np.repeat([0, 1], q)
  return dump


SINUSOID_TASKS = 3  # tasks of the regression figure: the first of the test stream
SINUSOID_GRID = 200  # points of x in [-5, 5] where curves are drawn


def regression_dump(learner: learner_base.Learner, config: config_lib.Config,
                    n_tasks: int = SINUSOID_TASKS, grid: int = SINUSOID_GRID) -> dict:
  """Curves of the first n_tasks test tasks (sinusoid) on a grid of x, E = n_tasks tasks:
  x [G], true [E, G], support_x / support_y [E, K], predictions [E, S+1, G] after 0..S inner
  steps (as the meta-test adapts: same seeds and MC samples), noisy [E, VIS_SAMPLES, G]:
  sampling forwards of the initial state (empty without noise), amplitude / phase [E]."""
  sampler = sampling.make_sampler(config, 'test')
  x = np.linspace(*sinusoid.X_RANGE, grid).astype(np.float32)[:, None]
  out = {key: [] for key in ('true', 'support_x', 'support_y', 'predictions', 'noisy',
                             'amplitude', 'phase')}
  n_noisy = VIS_SAMPLES if learner.noisy else 0
  for task in range(n_tasks):
    amplitude, phase = sampler.task_parameters(task)
    support_x, support_y, _, _ = sampler.task(task)
    seed = seeds_lib.fold_seed(tf.constant([config.seed, seeds_lib.EVAL], tf.int32),
                                  task)
    states = learner.adapt(support_x, support_y, seed, config.test_mc_samples)
    out['predictions'].append(np.stack([learner.predict(s, x).numpy()[:, 0] for s in states]))
    initial = learner.initial_state()
    out['noisy'].append(np.stack([
        learner.network(x, theta=initial, sample=True,
                        seed=seeds_lib.fold_seed(seed, 1000, s)).numpy()[:, 0]
        for s in range(n_noisy)]) if n_noisy else np.zeros([0, grid], np.float32))
    out['true'].append(sinusoid.curve(amplitude, phase, x[:, 0]))
    out['support_x'].append(support_x[:, 0])
    out['support_y'].append(support_y[:, 0])
    out['amplitude'].append(amplitude)
    out['phase'].append(phase)
  return dict({key: np.stack(values) for key, values in out.items()}, x=x[:, 0])


def export_visualization(config: config_lib.Config, savedir: str, out_path: str,
                         checkpoint: str | None = None) -> str:
  """Writes the visualization dump of a trained run as a .npz (regression: regression_dump);
  returns its path."""
  learner, step = export_lib.restore_learner(config, savedir, checkpoint)
  if learner.objective.name == 'regression':
    dump = regression_dump(learner, config)
  else:
    dump = visualization_dump(learner, config, data.load_splits(config, ('test',))['test'])
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  with files.atomic(out_path) as tmp:  # a .npz path: numpy keeps the name
    np.savez_compressed(tmp, checkpoint_step=step, maml=not learner.noisy,
                        method=config.method, **dump)
  return out_path


def noise_maps(model: network_lib.Network, images: np.ndarray, n_samples: int = 4,
               seed: int = 0) -> list:
  """Block outputs of the first of `images` (uint8 [n, H, W, C], a batch so batch norm has
  statistics): deterministic, then n_samples noise samples.

  Returns a list (1 + n_samples) of lists (4 blocks) of [H_l, W_l, C] arrays.
  """
  x = sampling.to_float(images)
  columns = [model.block_outputs(x)]
  columns += [model.block_outputs(x, sample=True, seed=tf.constant([seed, s], tf.int32))
              for s in range(n_samples)]
  return [[block[0].numpy() for block in column] for column in columns]
