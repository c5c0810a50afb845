"""Tests of tiered-ImageNet: preparation from each layout on tiny fake files, and episodes from
ragged shards (classes of different sizes)."""

import io
import os
import pickle

import numpy as np
from PIL import Image
import pytest

from data import prepare
from data import tiered
import helpers
from metadrop_tf.episodes import data as data_lib
from metadrop_tf.episodes import sampling

COUNTS = {'train': [3, 5, 4], 'val': [2, 3], 'test': [4, 2, 3]}


def _split(split):
  """(images uint8 [N, 84, 84, 3] with rows shuffled across classes, labels [N], names);
  pixel [0, 0, 0] is the class, [0, 0, 1] the image's rank within its class."""
  counts = COUNTS[split]
  labels = np.repeat(np.arange(len(counts)), counts)
  rank = np.concatenate([np.arange(n) for n in counts])
  order = np.random.default_rng(len(split)).permutation(len(labels))
  images = np.random.default_rng(0).integers(0, 256, (len(labels), 84, 84, 3), dtype=np.uint8)
  images[:, 0, 0, 0], images[:, 0, 0, 1] = labels, rank
  return images[order], labels[order], [f'n{split}{c}' for c in range(len(counts))]


def _png(image):
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')
  return buffer.getvalue()


def _write(source, layout):
  os.makedirs(source, exist_ok=True)
  for split in COUNTS:
    images, labels, names = _split(split)
    if layout == 'folders':
      for i, (image, label) in enumerate(zip(images, labels)):
        folder = os.path.join(source, split, names[label])
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(image).save(os.path.join(folder, f'{i:04d}.png'))
      continue
    with open(os.path.join(source, f'{split}_labels.pkl'), 'wb') as f:
      pickle.dump({'label_specific': labels, 'label_specific_str': names}, f)
    if layout == 'npz':
      np.savez(os.path.join(source, f'{split}_images.npz'), images=images)
    else:
      with open(os.path.join(source, f'{split}_images_png.pkl'), 'wb') as f:
        pickle.dump([_png(image) for image in images], f)


@pytest.mark.parametrize('layout', ['npz', 'png', 'folders'])
def test_every_layout_gives_the_same_ragged_shards(tmp_path, layout, monkeypatch):
  monkeypatch.setattr(tiered, 'CHUNK', 4)  # several chunks per split
  _write(str(tmp_path / 'src'), layout)
  out = str(tmp_path / 'out')
  prepare.main(['--dataset=tiered', '--source', str(tmp_path / 'src'), '--out_dir', out])
  for split, counts in COUNTS.items():
    shard = data_lib.load_split(out, split, (84, 84, 3), 'tiered')  # manifest checked
    assert isinstance(shard, data_lib.RaggedShard) and isinstance(shard.images, np.memmap)
    assert shard.counts.tolist() == counts and shard.shape == (len(counts), min(counts), 84,
                                                                 84, 3)
    images, labels, _ = _split(split)
    for c in range(len(counts)):
      np.testing.assert_array_equal(shard[c][:, 0, 0, 0], c)
      expected = images[labels == c]  # the release's order within a class is kept
      np.testing.assert_array_equal(shard[c], expected)


def test_episodes_from_a_ragged_shard_stay_inside_each_class(tmp_path):
  _write(str(tmp_path / 'src'), 'npz')
  out = str(tmp_path / 'out')
  prepare.main(['--dataset=tiered', '--source', str(tmp_path / 'src'), '--out_dir', out])
  shard = data_lib.load_split(out, 'train', (84, 84, 3), 'tiered')
  sampler = sampling.EpisodeSampler(shard, way=2, shot=1, query=1, seed=0)
  seen = set()
  for index in range(40):
    support, query = sampler.task(index)
    classes, instances = sampler.task_indices(index)
    for position, c in enumerate(classes):
      assert np.all(instances[position] < shard.counts[c])
      for image in (support[position], query[position]):
        assert image[0, 0, 0] == c
        seen.add((int(c), int(image[0, 0, 1])))
    np.testing.assert_array_equal(sampler.task(index)[0], support)  # a pure function of index
  assert (1, 4) in seen  # the largest class's last image is reachable
  with pytest.raises(data_lib.DataError, match='`shot=2` plus `query=2` exceeds the 3'):
    sampling.EpisodeSampler(shard, way=2, shot=2, query=2, seed=0)


def test_a_uniform_shard_draws_the_same_episodes_as_before():
  """The ragged support must not move the episodes of uniform shards (committed runs)."""
  images = np.random.default_rng(0).integers(0, 256, (6, 5, 4, 4, 1), dtype=np.uint8)
  sampler = sampling.EpisodeSampler(images, way=3, shot=1, query=2, seed=4)
  rng = np.random.default_rng([4, 0, 7])  # what the sampler did before ragged shards
  classes = rng.choice(6, 3, replace=False)
  instances = np.stack([rng.choice(5, 3, replace=False) for _ in range(3)])
  got = sampler.task_indices(7)
  np.testing.assert_array_equal(got[0], classes)
  np.testing.assert_array_equal(got[1], instances)


def test_bad_tiered_inputs_are_one_line(tmp_path):
  src = tmp_path / 'src'
  _write(str(src), 'npz')
  os.remove(src / 'val_labels.pkl')
  with pytest.raises(SystemExit, match='val_labels.pkl is missing'):
    prepare.main(['--dataset=tiered', '--source', str(src), '--out_dir', str(tmp_path / 'o')])
  (src / 'train_images.npz').write_bytes(b'<html><body>Quota exceeded</body></html>')
  with pytest.raises(SystemExit, match='train_images.npz is not an npz holding images'):
    prepare.main(['--dataset=tiered', '--source', str(src), '--out_dir', str(tmp_path / 'o')])
  with pytest.raises(SystemExit, match='tiered-ImageNet has no official download'):
    prepare.main(['--dataset=tiered', '--out_dir', str(tmp_path / 'o2')])


@pytest.mark.slow
def test_training_and_evaluation_run_on_ragged_shards(tmp_path, capsys):
  _write(str(tmp_path / 'src'), 'npz')
  out = str(tmp_path / 'out')
  prepare.main(['--dataset=tiered', '--source', str(tmp_path / 'src'), '--out_dir', out])
  savedir = str(tmp_path / 'run')
  args = [f'--savedir={savedir}', '--dataset=tiered', f'--data_dir={out}', '--way=2',
          '--shot=1', '--query=1', '--channels=4', '--n_steps=1', '--metabatch=1',
          '--n_train_iters=2', '--save_freq=2', '--eval_freq=2', '--eval_batches=1',
          '--n_test_mc_samp=2']
  assert helpers.run_program('train', *args) == 0, capsys.readouterr().err[-2000:]
  assert helpers.run_program('evaluate', f'--savedir={savedir}', '--n_test_iters=3') == 0
  assert 'tiered 2-way 1-shot metadrop | test | iteration 2 | 3 episodes' in capsys.readouterr().out
