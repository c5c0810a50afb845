"""NumPy shards: loading a dataset's splits, checking them, and their channel statistics
(sampling.py samples tasks from them).

A shard is a uint8 array [classes, instances, H, W] (Omniglot) or [classes, instances, H, W, C],
stored as `<split>.npy` (memory-mapped, for miniImageNet's 813 MB train shard) or `<split>.npz`
(key `images`, compressed).
"""

import difflib
import json
import os
from typing import Sequence
import zipfile

import numpy as np

from metadrop_tf import config as config_lib
from metadrop_tf import errors
from metadrop_tf import files
from metadrop_tf.episodes import manifest
from metadrop_tf.episodes import sinusoid

SPLIT_IDS = sinusoid.SPLIT_IDS  # the split's stream of tasks: train 0, val 1, test 2


class DataError(errors.UserError, ValueError):
  """Missing or malformed data; the message is one line naming the file or flag."""


class RaggedShard:
  """A split whose classes hold different numbers of images (tiered-ImageNet): images
  [N, H, W, C] grouped class by class (memory-mapped), offsets [classes + 1] int64.

  Indexing mirrors a uniform [classes, instances, H, W, C] shard where episodes need it:
  shard[c] is class c's images; shard[[c, d]] stacks classes truncated to the smaller one;
  shard[c, rest] indexes class c's images with rest. shape is (classes, the smallest class's
  count, H, W, C): what every task can rely on.
  """

  def __init__(self, images, offsets):
    self.images, self.offsets = images, np.asarray(offsets, np.int64)
    self.counts = np.diff(self.offsets)
    self.dtype = images.dtype

  @property
  def shape(self) -> tuple:
    return (len(self.counts), int(self.counts.min())) + tuple(self.images.shape[1:])

  @property
  def ndim(self) -> int:
    return len(self.shape)

  def __len__(self):
    return len(self.counts)

  def __getitem__(self, index):
    if isinstance(index, tuple):
      return self[index[0]][index[1:]]
    if isinstance(index, (int, np.integer)):
      return self.images[self.offsets[index]:self.offsets[index + 1]]
    classes = np.asarray(index)
    shortest = int(self.counts[classes].min())
    return np.stack([self[int(c)][:shortest] for c in classes])

  def gather(self, classes: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """Images [len(classes), K, H, W, C]: instances[i] (K indices) of class classes[i]."""
    rows = self.offsets[np.asarray(classes)][:, None] + np.asarray(instances)
    order = np.argsort(rows, axis=None)  # read the memory map in file order
    flat = np.empty((rows.size,) + tuple(self.images.shape[1:]), self.images.dtype)
    flat[order] = self.images[rows.reshape(-1)[order]]
    return flat.reshape(rows.shape + tuple(self.images.shape[1:]))


# A split's images: uint8 [classes, instances, H, W(, C)], or a RaggedShard.
Images = np.ndarray | RaggedShard


def prepare_hint(config_or_dataset: config_lib.Config | str, data_dir: str,
                 overwrite: bool = False) -> str:
  """What to do about a data folder without whole shards: a prepared folder of a similar name
  beside it (a misspelling), else the command that prepares this one (with --overwrite: over
  damaged shards)."""
  dataset = getattr(config_or_dataset, 'dataset', config_or_dataset)
  command = (f'python data/prepare.py --dataset={dataset} --out_dir={data_dir}'
             + (' --overwrite' if overwrite else ''))
  if dataset in ('mimgnet', 'tiered'):  # no official download: the user's copy of the release
    command += ' --source=<the folder of your copy of the release>'
  if overwrite:
    return f'prepare it again: {command}'
  parent, name = os.path.split(os.path.normpath(data_dir))
  try:
    siblings = [d for d in os.listdir(parent or '.')
                if d != name and _has_shards(os.path.join(parent, d))]
  except OSError:
    siblings = []
  close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.7)
  if close:
    return f'did you mean `data_dir={os.path.join(parent, close[0])}`?'
  return f'prepare it with: {command}'


def _has_shards(folder: str) -> bool:
  return any(os.path.exists(os.path.join(folder, f'train.{ext}')) for ext in ('npz', 'npy'))


def load_split(data_dir: str, split: str, image_shape: tuple,
               dataset: str = 'omniglot') -> Images:
  """Loads one shard as uint8 [classes, instances, H, W, C] (memory-mapped when .npy).

  The shard is checked against the folder's manifest.json when data/prepare.py wrote one
  (size and sha256); a damaged, truncated or half-copied shard is a DataError naming the file.
  """
  npy, npz = (os.path.join(data_dir, f'{split}.{ext}') for ext in ('npy', 'npz'))
  offsets_path = os.path.join(data_dir, f'{split}_offsets.npy')
  if os.path.exists(npy) and os.path.exists(offsets_path):
    return _load_ragged(npy, offsets_path, image_shape, dataset, data_dir)
  path = npy if os.path.exists(npy) else npz
  if not os.path.exists(path):
    raise DataError(f'no {split} shard in {data_dir} (looked for {split}.npy and '
                    f'{split}.npz); {prepare_hint(dataset, data_dir)}')
  damage = manifest.check(path)
  if damage:
    raise DataError(f'{damage}; copy it again or '
                    f'{prepare_hint(dataset, data_dir, overwrite=True)}')
  try:
    if path == npy:
      images = np.load(npy, mmap_mode='r')
    else:
      with np.load(npz) as archive:
        if 'images' not in archive:
          raise DataError(f'{npz} has no array named "images"')
        images = archive['images']
  except DataError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
    raise DataError(f'{path} is damaged or truncated ({errors.first_line(e, 120)}); copy it '
                    f'again or {prepare_hint(dataset, data_dir, overwrite=True)}') from None
  if images.ndim == 4 and image_shape[-1] == 1:
    images = images[..., None]
  if images.dtype != np.uint8 or images.shape[2:] != tuple(image_shape):
    raise DataError(f'{path} holds {images.dtype} {images.shape}; expected uint8 '
                    f'[classes, instances, {", ".join(map(str, image_shape))}]')
  return images


def _load_ragged(path, offsets_path, image_shape, dataset, data_dir):
  """A RaggedShard from <split>.npy [N, H, W, C] and <split>_offsets.npy, both checked."""
  for file_path in (path, offsets_path):
    damage = manifest.check(file_path)
    if damage:
      raise DataError(f'{damage}; copy it again or '
                      f'{prepare_hint(dataset, data_dir, overwrite=True)}')
  try:
    images = np.load(path, mmap_mode='r')
    offsets = np.load(offsets_path)
  except (OSError, ValueError, EOFError) as e:
    raise DataError(f'{path} or its offsets are damaged or truncated '
                    f'({errors.first_line(e, 120)}); copy them again or '
                    f'{prepare_hint(dataset, data_dir, overwrite=True)}') from None
  if images.dtype != np.uint8 or images.shape[1:] != tuple(image_shape):
    raise DataError(f'{path} holds {images.dtype} {images.shape}; expected uint8 '
                    f'[images, {", ".join(map(str, image_shape))}]')
  if (offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0
      or offsets[-1] != len(images) or np.any(np.diff(offsets) <= 0)):
    raise DataError(f'{offsets_path} is not increasing class offsets from 0 to {len(images)}')
  return RaggedShard(images, offsets)


def load_splits(config: config_lib.Config,
                splits: Sequence[str] = ('train', 'test')) -> dict:
  """Dict split -> images for a Config; Omniglot's val split is held out of train on request.
  A generated dataset (sinusoid) has no images: every split maps to None (make_sampler)."""
  if config.info.generated:
    return {s: None for s in splits}
  data_dir = config.resolved_data_dir
  if os.path.exists(data_dir) and not os.path.isdir(data_dir):
    raise DataError(f'`data_dir={data_dir}` is a file, not a folder of shards')
  if not os.path.isdir(data_dir):
    raise DataError(f'`data_dir={data_dir}` does not exist; {prepare_hint(config, data_dir)}')
  held_out = 4 * config.val_characters
  wanted = {'train' if (s == 'val' and held_out) else s for s in splits}
  loaded = {s: load_split(data_dir, s, config.image_shape, config.dataset) for s in wanted}
  if held_out:
    train = loaded['train']
    if held_out >= len(train):
      raise DataError(f'`val_characters={config.val_characters}` leaves no training classes '
                      f'of the {len(train)} in {data_dir}')
    loaded['train'], loaded['val'] = train[:-held_out], train[-held_out:]
  out = {s: loaded[s] for s in splits}
  for split, images in out.items():
    check_episode_fits(images, config.way, config.shot, config.query, split)
  return out


CHANNEL_STATS_FILE = 'channel_stats.json'


def compute_channel_statistics(images: Images, chunk: int = 256) -> tuple[list, list]:
  """Per-channel mean and standard deviation of uint8 images ([classes, instances, H, W(, C)]
  or a RaggedShard) in [0, 1] units, streamed over `chunk` classes at a time (a memory-mapped
  shard is never loaded whole): two lists of C floats (one for a shard without channels)."""
  flat = images.images if isinstance(images, RaggedShard) else images
  rows = len(flat)
  channels = flat.shape[-1] if flat.ndim in (4, 5) and flat.shape[-1] in (1, 3) else 1
  total = np.zeros(channels)
  squares = np.zeros(channels)
  count = 0
  for start in range(0, rows, chunk):
    block = np.asarray(flat[start:start + chunk], np.float64).reshape(-1, channels) / 255.0
    total += block.sum(axis=0)
    squares += np.square(block).sum(axis=0)
    count += len(block)
  mean = total / count
  return mean.tolist(), np.sqrt(np.maximum(squares / count - mean ** 2, 0.0)).tolist()


def channel_statistics(config: config_lib.Config,
                       train_images: Images | None) -> tuple[list, list]:
  """(mean, std) per channel of the training split: read from <data_dir>/channel_stats.json
  (written by data/prepare.py), else computed (compute_channel_statistics) and written there
  when the folder is writable. With Omniglot's --val_characters the held-out classes are
  excluded (the file then is not used: it describes the whole train shard)."""
  path = os.path.join(config.resolved_data_dir, CHANNEL_STATS_FILE)
  if os.path.exists(path) and not config.val_characters:
    try:
      with open(path) as f:
        stats = json.load(f)
      return stats['mean'], stats['std']
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise DataError(f'{path} cannot be read ({e}); delete it and it is computed again') from None
  mean, std = compute_channel_statistics(train_images)
  if not config.val_characters:
    try:
      files.write_json(path, {'mean': mean, 'std': std})
    except OSError:
      pass  # a read-only data folder: computed again next time
  return mean, std


def check_episode_fits(images: Images, way: int, shot: int, query: int, split: str) -> None:
  """Raises DataError if an N-way (K+Q)-instance task cannot be drawn from `images`."""
  classes, instances = images.shape[:2]
  if way > classes:
    raise DataError(f'`way={way}` exceeds the {classes} classes of the {split} split')
  if shot + query > instances:
    raise DataError(f'`shot={shot}` plus `query={query}` exceeds the {instances} '
                    f'instances per class of the {split} split')
