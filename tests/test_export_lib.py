"""Tests of export: the SavedModel matches evaluation and rejects bad input; the visualization
dump has the documented shapes and the plots are written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import helpers
from metadrop_tf import config as config_lib
from metadrop_tf import learners
from metadrop_tf.episodes import data
from metadrop_tf.episodes import sampling
from metadrop_tf.evaluation import eval_lib
from metadrop_tf.export import export_lib
from metadrop_tf.export import visualization
from metadrop_tf.runtime import checkpoints

N_EPISODES = 4

RELOAD = r'''
import json, sys
import numpy as np
import tensorflow as tf
assert 'metadrop_tf' not in sys.modules
for export_dir, path in zip(sys.argv[1::2], sys.argv[2::2]):  # one line per SavedModel
  served = tf.saved_model.load(export_dir).signatures['serving_default']
  episodes = np.load(path)
  accs, probs = [], []
  for i in range(len(episodes['support_x'])):
    out = served(support_x=tf.constant(episodes['support_x'][i]),
                 support_labels=tf.constant(episodes['support_labels'][i]),
                 query_x=tf.constant(episodes['query_x'][i]))
    accs.append(float(np.mean(out['labels'].numpy() == episodes['query_labels'][i])))
    probs.append(out['probabilities'].numpy().tolist())
  print(json.dumps({'accs': accs, 'probs': probs}))
assert 'metadrop_tf' not in sys.modules
'''


def _trained_run(tmp_path, maml, **changes):
  data_dir, savedir = str(tmp_path / 'data'), str(tmp_path / 'run')
  helpers.write_tiny_shards(data_dir, classes=(12, 16), instances=8)
  config = helpers.tiny_config(data_dir, maml=maml, n_test_mc_samp=2, query=3, **changes)
  model = learners.build(config)
  ckpt = checkpoints.make_checkpoint(model)
  checkpoints.make_manager(ckpt, savedir).save(checkpoint_number=0)
  checkpoints.write_config(savedir, config)
  return config, savedir, model


@pytest.mark.slow
def test_savedmodel_in_a_fresh_process_matches_evaluation(tmp_path):
  """MAML, Meta Dropout and CSN exported, then loaded in one process without metadrop_tf."""
  runs, argv = [], []
  for run, (maml, changes) in enumerate([(True, {}), (False, {}), (False, {'learner': 'csn'})]):
    config, savedir, model = _trained_run(tmp_path / str(run), maml, **changes)
    export_dir = export_lib.export_savedmodel(config, savedir, str(tmp_path / str(run) / 'export'))
    test = data.load_splits(config, ('test',))['test']
    sampler = sampling.EpisodeSampler(test, config.way, config.shot, config.query, config.seed,
                                      'test')
    tasks = [sampler.task(i) for i in range(N_EPISODES)]
    episodes = dict(support_x=np.stack([t[0] for t in tasks]).astype(np.float32) / 255,
                    query_x=np.stack([t[1] for t in tasks]).astype(np.float32) / 255,
                    support_labels=np.tile(np.repeat(np.arange(config.way), config.shot),
                                           (N_EPISODES, 1)),
                    query_labels=np.tile(np.repeat(np.arange(config.way), config.query),
                                         (N_EPISODES, 1)))
    path = str(tmp_path / str(run) / 'episodes.npz')
    np.savez(path, **episodes)
    runs.append((config, model, test, episodes))
    argv += [export_dir, path]
  proc = subprocess.run([sys.executable, '-c', RELOAD, *argv], capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()[-len(runs):]
  assert len(lines) == len(runs)
  for (config, model, test, episodes), line in zip(runs, lines):
    served = json.loads(line)
    eager = export_lib.AdaptAndPredict(model, config)
    for i in range(N_EPISODES):
      out = eager.serve_labels(episodes['support_x'][i], episodes['support_labels'][i],
                               episodes['query_x'][i])
      np.testing.assert_allclose(served['probs'][i], out['probabilities'], rtol=1e-5, atol=1e-6)
    evaluated = eval_lib.evaluate(model, test, config, 'test', N_EPISODES,
                                  config.test_mc_samples, progress=False)
    if not model.noisy:
      np.testing.assert_allclose(served['accs'], evaluated['per_episode_accuracy'], rtol=1e-6)
    else:  # different noise draws: equal within Monte-Carlo tolerance
      assert abs(np.mean(served['accs']) - np.mean(evaluated['per_episode_accuracy'])) < 0.25


_GOOD = np.full((3, 28, 28, 1), 0.5, np.float32)
_LABELS = np.arange(3, dtype=np.int64)


@pytest.fixture(name='modules', scope='module')
def _modules(tmp_path_factory):
  """maml -> an AdaptAndPredict of an untrained tiny run (shared: its signatures trace once)."""
  modules = {}
  for maml in (False, True):
    config, _, model = _trained_run(tmp_path_factory.mktemp(f'maml{maml}'), maml=maml)
    modules[maml] = export_lib.AdaptAndPredict(model, config)
  return modules


@pytest.mark.parametrize('support_x, labels, query_x, words', [
    (_GOOD, np.array([0, 1, 3]), _GOOD, r'support_labels must be in \[0, way\)'),
    (_GOOD[:0], _LABELS[:0], _GOOD, 'support_x is empty'),
    (_GOOD, _LABELS, _GOOD[:0], 'query_x is empty'),
    (np.zeros((3, 32, 32, 1), np.float32), _LABELS, _GOOD,
     r'support_x must be float32 \[n, 28, 28, 1\] images'),
    (_GOOD, _LABELS, np.zeros((2, 28, 28, 3), np.float32),
     r'query_x must be float32 \[n, 28, 28, 1\] images'),
    (_GOOD * 255, _LABELS, _GOOD, r'support_x pixels must be in \[0, 1\] \(divide 0..255'),
    (_GOOD, _LABELS, np.where(_GOOD > 0, np.nan, 0).astype(np.float32),
     'query_x holds NaN or inf'),
    (_GOOD[:2], _LABELS, _GOOD, 'support images and labels differ in number'),
])
def test_serving_names_the_bad_input(modules, support_x, labels, query_x, words):
  module = modules[False]
  with pytest.raises(tf.errors.InvalidArgumentError, match=words):
    module.serve_labels(tf.constant(support_x), tf.constant(labels), tf.constant(query_x))


@pytest.mark.parametrize('onehot, words', [
    (np.eye(4, dtype=np.float32)[:3], 'support_y must have way = 3 columns'),
    (np.eye(3, dtype=np.float32) * 0.5, 'support_y must be one-hot'),
    (np.ones((3, 3), np.float32), 'support_y must be one-hot'),
])
def test_onehot_serving_names_a_label_that_is_not_one_hot(modules, onehot, words):
  module = modules[True]
  with pytest.raises(tf.errors.InvalidArgumentError, match=words):
    module.serve_onehot(tf.constant(_GOOD), tf.constant(onehot), tf.constant(_GOOD))
  good = module.serve_onehot(tf.constant(_GOOD), tf.constant(np.eye(3, dtype=np.float32)),
                             tf.constant(_GOOD))
  assert good['probabilities'].shape == (3, 3)


def test_export_refuses_a_non_empty_folder_and_replaces_only_with_overwrite(tmp_path):
  config, savedir, _ = _trained_run(tmp_path, maml=True)
  target = tmp_path / 'export'
  target.mkdir()
  (target / 'notes.txt').write_text('mine')
  with pytest.raises(config_lib.ConfigError, match='is not empty; pass `overwrite=True`'):
    export_lib.export_savedmodel(config, savedir, str(target))
  assert (target / 'notes.txt').read_text() == 'mine'
  export_lib.export_savedmodel(config, savedir, str(target), overwrite=True)
  assert sorted(os.listdir(target)) == ['assets', 'assets.extra', 'fingerprint.pb',
                                        'saved_model.pb', 'variables']
  assert sorted(os.listdir(tmp_path)) == ['data', 'export', 'run']  # no temporary left


def test_an_interrupted_export_leaves_the_earlier_one_whole(tmp_path, monkeypatch):
  config, savedir, _ = _trained_run(tmp_path, maml=True)
  target = str(tmp_path / 'export')
  export_lib.export_savedmodel(config, savedir, target)
  before = sorted(os.listdir(target))

  def interrupted_save(module, path, signatures):
    os.makedirs(os.path.join(path, 'variables'))
    open(os.path.join(path, 'saved_model.pb'), 'wb').close()  # half written
    raise KeyboardInterrupt

  monkeypatch.setattr(tf.saved_model, 'save', interrupted_save)
  with pytest.raises(KeyboardInterrupt):
    export_lib.export_savedmodel(config, savedir, target, overwrite=True)
  assert sorted(os.listdir(target)) == before
  monkeypatch.undo()
  assert 'serving_default' in tf.saved_model.load(target).signatures


@pytest.mark.slow
@pytest.mark.parametrize('maml, changes', [
    (True, {}), (False, {}), (False, {'learner': 'metasgd', 'zero_head': True})])
def test_visualization_dump_shapes_and_plots(tmp_path, maml, changes):
  plots = pytest.importorskip('metadrop_tf.export.plots')
  config, savedir, model = _trained_run(tmp_path, maml, **changes)
  path = visualization.export_visualization(config, savedir, str(tmp_path / 'vis' / 'dump.npz'))
  dump = dict(np.load(path))
  steps, k, q, f = config.n_steps + 1, config.shot, config.query, model.network.feature_dim
  assert dump['support_features'].shape == (10, steps, 2 * k, f)
  assert dump['query_features'].shape == (10, steps, 2 * q, f)
  assert dump['perturbed_features'].shape == (10, steps, 10 if model.noisy else 0, 2 * k, f)
  assert dump['dense_kernel'].shape == (10, steps, f, 2)
  assert dump['dense_bias'].shape == (10, steps, 2)
  head = model.initial_state(2)['dense_kernel'][:, :2]
  np.testing.assert_allclose(dump['dense_kernel'][0, 0], head)
  assert np.any(dump['dense_kernel'][0, -1] != head)
  pngs = plots.plot_boundaries(dump, str(tmp_path / 'png'), episodes=1)
  images = np.zeros((3, 28, 28, 1), np.uint8) + 80
  pngs.append(plots.plot_noise(visualization.noise_maps(model.network, images),
                               str(tmp_path / 'noise.png')))
  assert len(pngs) == steps + 1
  for png in pngs:
    assert open(png, 'rb').read(8) == b'\x89PNG\r\n\x1a\n' and os.path.getsize(png) > 1000


@pytest.mark.slow
def test_savedmodel_runs_under_the_tf1_loader_of_saved_model_cli(tmp_path):
  """TF Serving and `saved_model_cli run` restore variables by name (TF1 loader)."""
  config, savedir, _ = _trained_run(tmp_path, maml=False)
  export_dir = export_lib.export_savedmodel(config, savedir, str(tmp_path / 'export'))
  inputs = {'support_x': np.random.default_rng(0).random((3, 28, 28, 1), np.float32),
            'support_labels': np.arange(3), 'query_x': np.zeros((2, 28, 28, 1), np.float32)}
  for name, value in inputs.items():
    np.save(tmp_path / f'{name}.npy', value)
  spec = ';'.join(f'{name}={tmp_path / name}.npy' for name in inputs)
  proc = subprocess.run([sys.executable, '-m', 'tensorflow.python.tools.saved_model_cli', 'run',
                         '--dir', export_dir, '--tag_set', 'serve', '--signature_def',
                         'serving_default', '--inputs', spec],
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'Result for output key probabilities' in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize('changes', [
    {'learner': 'metasgd', 'meta_dropout': True}, {'learner': 'anil', 'zero_head': True},
    {'learner': 'maml', 'lslr': True}, {'learner': 'csn'}])
def test_savedmodel_of_every_kind_of_learner_matches_it(tmp_path, changes):
  """Learners with variables of their own (learned rates) and zero heads export and serve
  the same predictions as the learner in this process."""
  config, savedir, learner = _trained_run(tmp_path, False, **changes)
  for variable in learner.meta_variables():  # weights away from their initial values
    variable.assign(variable * 1.1)
  ckpt = checkpoints.make_checkpoint(learner)
  checkpoints.make_manager(ckpt, savedir).save(checkpoint_number=1)
  export_dir = export_lib.export_savedmodel(config, savedir, str(tmp_path / 'export'))
  served = tf.saved_model.load(export_dir).signatures['serving_default']
  support = tf.constant(np.random.default_rng(0).random((3, 28, 28, 1)), tf.float32)
  query = tf.constant(np.random.default_rng(1).random((4, 28, 28, 1)), tf.float32)
  labels = tf.constant([0, 1, 2], tf.int64)
  got = served(support_x=support, support_labels=labels, query_x=query)['probabilities']
  eager = export_lib.AdaptAndPredict(learner, config).serve_labels(support, labels, query)
  np.testing.assert_allclose(got, eager['probabilities'], rtol=1e-5, atol=1e-6)


def test_inductive_savedmodel_serves_one_query_image_as_in_a_batch(tmp_path):
  config, savedir, learner = _trained_run(tmp_path, False, bn_mode='inductive')
  export_dir = export_lib.export_savedmodel(config, savedir, str(tmp_path / 'export'))
  served = tf.saved_model.load(export_dir).signatures['serving_default']
  support = tf.constant(np.random.default_rng(0).random((3, 28, 28, 1)), tf.float32)
  query = tf.constant(np.random.default_rng(1).random((4, 28, 28, 1)), tf.float32)
  labels = tf.constant([0, 1, 2], tf.int64)
  batch = served(support_x=support, support_labels=labels, query_x=query)['probabilities']
  for i in range(4):
    one = served(support_x=support, support_labels=labels, query_x=query[i:i + 1])
    np.testing.assert_allclose(one['probabilities'][0], batch[i], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('support_x, support_y, query_x, words', [
    (np.zeros((3, 2), np.float32), np.zeros((3, 1), np.float32), np.zeros((2, 1), np.float32),
     r'support_x must be float32 \[n, 1\]'),
    (np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32), np.zeros((2, 1), np.float32),
     'support_x is empty'),
    (np.zeros((3, 1), np.float32), np.full((3, 1), np.nan, np.float32),
     np.zeros((2, 1), np.float32), 'support_y holds NaN or inf'),
    (np.zeros((3, 1), np.float32), np.zeros((2, 1), np.float32), np.zeros((2, 1), np.float32),
     'support inputs and targets differ in number'),
])
def test_regression_serving_names_the_bad_input(support_x, support_y, query_x, words):
  config = helpers.tiny_config(dataset='sinusoid', way=1, backbone='mlp', channels=8, shot=3,
                               query=2)
  module = export_lib.AdaptAndRegress(learners.build(config), config)
  with pytest.raises(tf.errors.InvalidArgumentError, match=words):
    module.serve(support_x, support_y, query_x)
  good = module.serve(np.ones((3, 1), np.float32), np.ones((3, 1), np.float32),
                      np.ones((4, 1), np.float32))['predictions']
  assert good.shape == (4, 1)
