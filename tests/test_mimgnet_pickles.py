"""Tests of miniImageNet from its two pickle layouts, on tiny fake pickles of each."""

import json
import os
import pickle

import numpy as np
import pytest

from data import mimgnet_pickles
from data import prepare
from metadrop_tf.episodes import data as data_lib

SPLITS = {'train': ['n02', 'n01', 'n03'], 'val': ['n04', 'n05'], 'test': ['n06', 'n07']}
PER_CLASS = 3


def _images(split):
  """uint8 [classes * PER_CLASS, 84, 84, 3], class c's images have pixel [0, 0, 0] = c."""
  rng = np.random.default_rng(len(split))
  out = rng.integers(0, 256, (len(SPLITS[split]) * PER_CLASS, 84, 84, 3), dtype=np.uint8)
  out[:, 0, 0, 0] = np.repeat(np.arange(len(SPLITS[split])), PER_CLASS)
  return out


def _write_cache(folder):
  os.makedirs(folder, exist_ok=True)
  for split, wnids in SPLITS.items():
    images = _images(split)
    class_dict = {w: list(range(c * PER_CLASS, (c + 1) * PER_CLASS)) for c, w in enumerate(wnids)}
    with open(os.path.join(folder, mimgnet_pickles.CACHE.format(split)), 'wb') as f:
      pickle.dump({'image_data': images, 'class_dict': class_dict}, f)


def _write_category(folder):
  os.makedirs(folder, exist_ok=True)
  for split, wnids in SPLITS.items():
    images = _images(split)
    labels = np.repeat(np.arange(len(wnids)), PER_CLASS)
    order = np.random.default_rng(0).permutation(len(labels))  # rows not grouped by class
    obj = {b'data': images[order], b'labels': labels[order].tolist(),
           b'catname2label': {w.encode(): c for c, w in enumerate(wnids)}}
    path = os.path.join(folder, mimgnet_pickles.CATEGORY.format(
        mimgnet_pickles.CATEGORY_PARTS[split]))
    with open(path, 'wb') as f:
      pickle.dump(obj, f, protocol=2)  # as Python 2 wrote them, byte-string keys


@pytest.mark.parametrize('write', [_write_cache, _write_category])
def test_both_layouts_give_the_same_shards(tmp_path, write):
  write(str(tmp_path / 'src'))
  prepare.main(['--dataset=mimgnet', '--source', str(tmp_path / 'src'),
                '--out_dir', str(tmp_path / 'out')])
  names = json.load(open(tmp_path / 'out' / 'splits.json'))
  for split, wnids in SPLITS.items():
    shard = data_lib.load_split(str(tmp_path / 'out'), split, (84, 84, 3))  # manifest checked
    assert isinstance(shard, np.memmap) and shard.shape == (len(wnids), PER_CLASS, 84, 84, 3)
    assert names[split] == sorted(wnids)
    images = _images(split)
    for c, wnid in enumerate(sorted(wnids)):
      original = images[images[:, 0, 0, 0] == wnids.index(wnid)]
      assert sorted(map(bytes, shard[c])) == sorted(map(bytes, original))


def test_an_html_page_and_a_pickle_of_other_objects_are_one_line_errors(tmp_path):
  src = tmp_path / 'src'
  _write_cache(str(src))
  (src / mimgnet_pickles.CACHE.format('train')).write_bytes(
      b'\n  <!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>')
  with pytest.raises(SystemExit, match='mini-imagenet-cache-train.pkl is an HTML page'):
    prepare.main(['--dataset=mimgnet', '--source', str(src), '--out_dir', str(tmp_path / 'o')])

  class Evil:
    def __reduce__(self):
      return (os.system, ('echo owned',))

  with open(src / mimgnet_pickles.CACHE.format('train'), 'wb') as f:
    pickle.dump({'image_data': Evil()}, f)
  with pytest.raises(SystemExit, match='not a readable miniImageNet pickle .*posix.system'):
    prepare.main(['--dataset=mimgnet', '--source', str(src), '--out_dir', str(tmp_path / 'o')])
  with open(src / mimgnet_pickles.CACHE.format('train'), 'wb') as f:
    pickle.dump({'images': np.zeros(3)}, f)
  with pytest.raises(SystemExit, match="lacks the 'image_data' entry"):
    prepare.main(['--dataset=mimgnet', '--source', str(src), '--out_dir', str(tmp_path / 'o')])
