"""Tests of shard loading, the episode sampler's invariants and the tf.data pipeline."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import helpers
from metadrop_tf.episodes import data
from metadrop_tf.episodes import manifest
from metadrop_tf.episodes import sampling


@pytest.fixture(name='shards')
def _shards(tmp_path):
  return helpers.write_tiny_shards(str(tmp_path), classes=(12, 8), instances=6, size=16)


def _sampler(shards, split='train', seed=0, way=4, shot=2, query=3):
  return sampling.EpisodeSampler(shards[split][..., None], way, shot, query, seed, split)


def test_task_invariants(shards):
  sampler = _sampler(shards)
  for index in range(20):
    classes, instances = sampler.task_indices(index)
    assert len(set(classes)) == 4 and all(0 <= c < 12 for c in classes)
    assert instances.shape == (4, 5)
    assert all(len(set(row)) == 5 for row in instances)  # support and query disjoint
    support, query = sampler.task(index)
    assert support.shape == (8, 16, 16, 1) and query.shape == (12, 16, 16, 1)
    assert support.dtype == np.uint8
    # pixel [0, 0] encodes the class, [0, 1] the instance: class-major order, right images.
    np.testing.assert_array_equal(support[:, 0, 0, 0], np.repeat(classes, 2))
    np.testing.assert_array_equal(query[:, 0, 0, 0], np.repeat(classes, 3))
    np.testing.assert_array_equal(support[:, 0, 1, 0], instances[:, :2].ravel())
    np.testing.assert_array_equal(query[:, 0, 1, 0], instances[:, 2:].ravel())


def test_streams_are_seeded_and_independent(shards):
  a, b = _sampler(shards, seed=1), _sampler(shards, seed=1)
  for i in range(5):
    np.testing.assert_array_equal(a.task(i)[0], b.task(i)[0])
  assert any(not np.array_equal(a.task(i)[0], _sampler(shards, seed=2).task(i)[0])
             for i in range(5))
  assert not all(np.array_equal(a.task_indices(i)[0], a.task_indices(i + 1)[0])
                 for i in range(5))
  test = _sampler(shards, split='test', seed=1)
  assert all(test.task(i)[0][:, 0, 0, 0].min() >= 100 for i in range(5))  # never mixes splits


def test_meta_batch_is_consecutive_tasks(shards):
  sampler = _sampler(shards)
  support, query = sampler.meta_batch(3, 2)
  assert support.shape == (2, 8, 16, 16, 1) and query.shape == (2, 12, 16, 16, 1)
  np.testing.assert_array_equal(support[1], sampler.task(7)[0])


def test_dataset_yields_float_episodes(shards):
  sampler = _sampler(shards)
  episodes = list(sampling.make_dataset(sampler, 2, start=1, count=3))
  assert len(episodes) == 3
  ep = episodes[0]
  assert ep.support_x.shape == (2, 8, 16, 16, 1) and ep.query_y.shape == (2, 12, 4)
  assert ep.support_x.dtype.name == 'float32'
  assert 0.0 <= float(np.min(ep.query_x)) and float(np.max(ep.query_x)) <= 1.0
  assert (ep.way, ep.shot, ep.query) == (4, 2, 3)
  np.testing.assert_array_equal(np.argmax(ep.support_y[0], -1), np.repeat(np.arange(4), 2))
  np.testing.assert_allclose(ep.support_x.numpy()[1] * 255, sampler.meta_batch(1, 2)[0][1],
                             atol=1e-3)


def test_load_split_formats_and_errors(tmp_path):
  npy = helpers.write_tiny_shards(str(tmp_path / 'npy'), size=28, fmt='npy')
  loaded = data.load_split(str(tmp_path / 'npy'), 'train', (28, 28, 1))
  assert isinstance(loaded.base, np.memmap) or isinstance(loaded, np.memmap)
  np.testing.assert_array_equal(loaded[..., 0], npy['train'])
  with pytest.raises(data.DataError, match='no val shard .*prepare.py'):
    data.load_split(str(tmp_path / 'npy'), 'val', (28, 28, 1))
  with pytest.raises(data.DataError, match=r'train.npy holds uint8 \(12, 6, 28, 28\)'):
    data.load_split(str(tmp_path / 'npy'), 'train', (84, 84, 3))
  np.save(tmp_path / 'npy' / 'test.npy', np.zeros((3, 6, 28, 28), np.float32))
  with pytest.raises(data.DataError, match='float32'):
    data.load_split(str(tmp_path / 'npy'), 'test', (28, 28, 1))
  (tmp_path / 'bad').mkdir()
  (tmp_path / 'bad' / 'train.npz').write_bytes(b'not a zip')
  with pytest.raises(data.DataError, match='bad.train.npz is damaged or truncated'):
    data.load_split(str(tmp_path / 'bad'), 'train', (28, 28, 1))


def test_load_splits_checks_the_task_fits_and_holds_out_val(tmp_path):
  helpers.write_tiny_shards(str(tmp_path), classes=(12, 8), instances=6)
  config = helpers.tiny_config(str(tmp_path), val_characters=1)
  splits = data.load_splits(config, ('train', 'val', 'test'))
  assert [len(splits[s]) for s in ('train', 'val', 'test')] == [8, 4, 8]
  np.testing.assert_array_equal(splits['val'][:, 0, 0, 0, 0], [8, 9, 10, 11])
  with pytest.raises(data.DataError, match='`way=9` exceeds the 8 classes of the test split'):
    data.load_splits(helpers.tiny_config(str(tmp_path), way=9))
  with pytest.raises(data.DataError, match='`shot=3` plus `query=4` exceeds the 6'):
    data.load_splits(helpers.tiny_config(str(tmp_path), shot=3, query=4))
  with pytest.raises(data.DataError, match='does not exist'):
    data.load_splits(helpers.tiny_config(os.path.join(str(tmp_path), 'missing')))


def _damage(path, offset_fraction=0.5):
  """Flips the bits of one byte in the middle of a file."""
  with open(path, 'r+b') as f:
    f.seek(int(os.path.getsize(path) * offset_fraction))
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize('fault, words', [
    ('truncate', 'train.npz is damaged or truncated'),
    ('flip', 'train.npz is damaged or truncated'),
    ('empty', 'train.npz is damaged or truncated'),
])
def test_a_damaged_shard_without_manifest_is_one_line(tmp_path, fault, words):
  helpers.write_tiny_shards(str(tmp_path))
  path = str(tmp_path / 'train.npz')
  if fault == 'truncate':
    os.truncate(path, os.path.getsize(path) // 2)
  elif fault == 'flip':
    _damage(path)
  else:
    os.truncate(path, 0)
  with pytest.raises(data.DataError) as err:
    data.load_split(str(tmp_path), 'train', (28, 28, 1))
  message = str(err.value)
  assert words in message and 'data/prepare.py' in message and '\n' not in message


@pytest.mark.parametrize('fmt', ['npz', 'npy'])
def test_the_manifest_catches_a_partial_copy_and_a_changed_byte(tmp_path, fmt):
  helpers.write_tiny_shards(str(tmp_path), fmt=fmt)
  manifest.write(str(tmp_path), [f'train.{fmt}', f'test.{fmt}'])
  assert data.load_split(str(tmp_path), 'train', (28, 28, 1)).shape[0] == 12
  path = str(tmp_path / f'train.{fmt}')
  original = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(original[:-100])  # a copy that stopped early: the npy loads, memory-mapped
  with pytest.raises(data.DataError, match=f'train.{fmt} has {len(original) - 100} bytes, '
                     '.*manifest.json says'):
    data.load_split(str(tmp_path), 'train', (28, 28, 1))
  with open(path, 'wb') as f:
    f.write(original)
  _damage(path, 0.9)  # the npy header is intact: without the manifest this would load
  with pytest.raises(data.DataError, match='does not match the sha256'):
    data.load_split(str(tmp_path), 'train', (28, 28, 1))
  assert data.load_split(str(tmp_path), 'test', (28, 28, 1)).shape[0] == 8


def test_a_file_as_data_dir_is_named(tmp_path):
  (tmp_path / 'file').write_text('x')
  with pytest.raises(data.DataError, match='is a file, not a folder of shards'):
    data.load_splits(helpers.tiny_config(str(tmp_path / 'file')))


# --- augmentation (--augment) ----------------------------------------------------------------
def _episodes(images, augment_seed, index=0, way=3):
  sampler = sampling.EpisodeSampler(images, way, 1, 2, seed=0)
  return next(iter(sampling.make_dataset(sampler, 2, start=index, count=1,
                                     augment_seed=augment_seed)))


@pytest.mark.parametrize('channels', [None, 3])
def test_augmentation_is_deterministic_by_seed_and_index_and_keeps_pixels_in_range(
    tmp_path, channels):
  images = helpers.write_tiny_shards(str(tmp_path), channels=channels)['train']
  plain = _episodes(images, None)
  first, again = _episodes(images, 5), _episodes(images, 5)
  np.testing.assert_array_equal(first.support_x, again.support_x)
  np.testing.assert_array_equal(first.query_x, again.query_x)
  assert not np.array_equal(first.support_x, plain.support_x)
  assert not np.array_equal(_episodes(images, 6).support_x, first.support_x)
  assert first.support_x.shape == plain.support_x.shape
  for x in (first.support_x, first.query_x):
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
  np.testing.assert_array_equal(first.support_y, plain.support_y)


def test_omniglot_augmentation_is_a_shift_of_at_most_two_pixels(tmp_path):
  images = helpers.write_tiny_shards(str(tmp_path))['train']
  plain = _episodes(images, None).support_x.numpy().reshape((-1, 28, 28))
  shifted = _episodes(images, 5).support_x.numpy().reshape((-1, 28, 28))
  pad = sampling.SHIFT_PIXELS
  moved = 0
  for original, got in zip(plain, shifted):
    padded = np.pad(original, pad)
    offsets = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
               if np.array_equal(padded[dy:dy + 28, dx:dx + 28], got)]
    assert offsets, 'not a shift of the original image'
    moved += (pad, pad) not in offsets
  assert moved > 0


class _StreamMadeError(Exception):
  """Raised by a patched make_dataset: the test needs only the stream's arguments."""


def test_training_augments_only_with_the_flag_and_evaluation_never(tmp_path, monkeypatch):
  from metadrop_tf import learners  # pylint: disable=g-import-not-at-top
  from metadrop_tf.evaluation import eval_lib  # pylint: disable=g-import-not-at-top
  from metadrop_tf.train import train_lib  # pylint: disable=g-import-not-at-top
  seen, original = [], sampling.make_dataset

  def recorded(*args, stop=True, **kwargs):
    seen.append(kwargs.get('augment_seed'))
    if stop:
      raise _StreamMadeError
    return original(*args, **kwargs)
  monkeypatch.setattr(sampling, 'make_dataset', recorded)
  for augment in (False, True):
    config, savedir = helpers.saved_run(tmp_path / str(augment), checkpoints_at=(),
                                        augment=augment, seed=5)
    with pytest.raises(_StreamMadeError):  # the training stream, made before anything is traced
      train_lib.train(config, savedir, progress=False)
  assert seen == [None, 5]
  # Evaluation (also during training) streams the episodes unaugmented, in an augmented run.
  monkeypatch.setattr(sampling, 'make_dataset', lambda *a, **k: recorded(*a, stop=False, **k))
  zeros = lambda episode, first: {k: tf.zeros([2]) for k in ('acc', 'acc_pre', 'loss')}
  images = data.load_splits(config, ('test',))['test']
  result = eval_lib.evaluate(learners.build(config), images, config, 'test', 4, 1,
                             metabatch=2, progress=False, eval_step=zeros)
  assert seen == [None, 5, None] and result['n_episodes'] == 4


# --- per-channel normalization (--normalize) ---------------------------------------------------
def test_channel_statistics_are_the_training_splits_streamed():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (7, 3, 5, 5, 3), dtype=np.uint8)
  mean, std = data.compute_channel_statistics(images, chunk=2)
  pixels = images.reshape(-1, 3) / 255.0
  np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(std, pixels.std(axis=0), rtol=1e-10)
  ragged = data.RaggedShard(images.reshape(21, 5, 5, 3), [0, 4, 9, 21])
  np.testing.assert_allclose(data.compute_channel_statistics(ragged, chunk=5)[0], mean,
                             rtol=1e-12)


def test_normalized_network_sees_standardized_pixels():
  plain, normalized = helpers.tiny_model(), helpers.tiny_model()
  normalized.normalize_inputs(1)
  normalized.set_input_statistics([0.4], [0.2])
  x = helpers.random_episode().query_x[0]
  np.testing.assert_allclose(normalized(x), plain((x - 0.4) / 0.2), rtol=1e-12)
  assert not normalized.input_mean.trainable
  assert all(v is not normalized.input_mean for v in normalized.meta_variables())


def test_a_normalized_run_takes_the_statistics_from_the_data_and_keeps_them(tmp_path):
  from metadrop_tf import learners  # pylint: disable=g-import-not-at-top
  from metadrop_tf.runtime import checkpoints  # pylint: disable=g-import-not-at-top
  from metadrop_tf.train import train_lib  # pylint: disable=g-import-not-at-top
  config, savedir = helpers.saved_run(tmp_path, checkpoints_at=(), normalize=True,
                                      n_train_iters=1, eval_freq=100)
  train_lib.train(config, savedir, progress=False)
  train = data.load_splits(config, ('train',))['train']
  mean, std = data.compute_channel_statistics(train)
  with open(os.path.join(config.data_dir, data.CHANNEL_STATS_FILE)) as f:
    assert json.load(f) == {'mean': mean, 'std': std}
  restored = learners.build(config)
  assert float(restored.network.input_std[0]) == 1.0
  checkpoints.restore(checkpoints.make_checkpoint(restored), savedir)
  np.testing.assert_allclose(restored.network.input_mean.numpy(), mean, rtol=1e-6)
  np.testing.assert_allclose(restored.network.input_std.numpy(), std, rtol=1e-6)


def test_a_misspelled_data_dir_points_at_the_prepared_folder_beside_it(tmp_path):
  helpers.write_tiny_shards(str(tmp_path / 'omniglot'))
  hint = data.prepare_hint('omniglot', str(tmp_path / 'omniglt'))
  assert hint == f"did you mean `data_dir={tmp_path / 'omniglot'}`?"
  hint = data.prepare_hint('omniglot', str(tmp_path / 'elsewhere'))
  assert hint == (f"prepare it with: python data/prepare.py --dataset=omniglot "
                  f"--out_dir={tmp_path / 'elsewhere'}")


def test_prepare_advice_for_a_dataset_without_download_asks_for_the_source(tmp_path):
  hint = data.prepare_hint('mimgnet', str(tmp_path / 'm'))
  assert '--dataset=mimgnet' in hint and '--source=' in hint
  hint = data.prepare_hint('omniglot', str(tmp_path / 'o'), overwrite=True)
  assert hint.startswith('prepare it again: python data/prepare.py') and '--overwrite' in hint
