"""tiered-ImageNet (Ren et al. 2018: 608 classes, 351 / 97 / 160, 84x84 RGB, ~779k images)
-> ragged shards: <split>.npy uint8 [N, 84, 84, 3] grouped class by class (memory-mapped) and
<split>_offsets.npy [classes + 1], read by metadrop_tf.episodes.data.RaggedShard.

Layouts of --source (per split; train, val, test):
  <split>_images.npz (key `images`, uint8 [N, 84, 84, 3]) + <split>_labels.pkl
  <split>_images_png.pkl (a list of N PNG-encoded images) + <split>_labels.pkl
  <split>/<class>/*.jpg|png (one folder per class)
The labels pickle holds `label_specific` [N] (class indices) and, when present,
`label_specific_str` (class names). Arrays are streamed from the npz member in chunks and
written where their class puts them, so a split is never loaded whole.
"""

import io
import os
import zipfile

import numpy as np
from PIL import Image

try:  # imported as data.tiered
  from data import mimgnet_pickles
except ImportError:  # run from data/
  import mimgnet_pickles
from metadrop_tf import files as files_lib  # pylint: disable=g-import-not-at-top

SIZE = 84
SPLITS = ('train', 'val', 'test')
CHUNK = 4096  # images per read while streaming an npz member


class TieredError(RuntimeError):
  """Unusable tiered-ImageNet input; one line naming the file."""


def _labels(path):
  obj = mimgnet_pickles.load(path, 'tiered-ImageNet labels')
  try:
    labels = np.asarray(mimgnet_pickles.entry(obj, 'label_specific'), np.int64)
  except KeyError:
    raise TieredError(f'{path} has no label_specific entry') from None
  try:
    names = [mimgnet_pickles.text(n) for n in mimgnet_pickles.entry(obj, 'label_specific_str')]
  except KeyError:
    names = [f'class{c:03d}' for c in range(labels.max() + 1)]
  return labels, names


def _offsets(labels, n_classes):
  counts = np.bincount(labels, minlength=n_classes)
  if np.any(counts == 0):
    raise TieredError(f'classes {np.flatnonzero(counts == 0)[:5].tolist()} have no images')
  return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _stream_npz(path, key='images'):
  """Yields uint8 chunks [k, 84, 84, 3] of npz member `key` in order, never all at once."""
  try:
    with zipfile.ZipFile(path) as archive, archive.open(f'{key}.npy') as member:
      version = np.lib.format.read_magic(member)
      read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                     else np.lib.format.read_array_header_2_0)
      shape, fortran, dtype = read_header(member)
      if fortran or dtype != np.uint8 or tuple(shape[1:]) != (SIZE, SIZE, 3):
        raise TieredError(f'{path}: {key} is {dtype} {shape}; expected uint8 [N, 84, 84, 3]')
      per = SIZE * SIZE * 3
      for start in range(0, shape[0], CHUNK):
        count = min(CHUNK, shape[0] - start)
        yield np.frombuffer(member.read(count * per), np.uint8).reshape(count, SIZE, SIZE, 3)
  except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
    raise TieredError(f'{path} is not an npz holding {key} ({e}); download it again') from None


def _decode(png_bytes):
  if isinstance(png_bytes, str):  # a Python 2 pickle's str, read back as latin-1
    png_bytes = png_bytes.encode('latin1')
  image = Image.open(io.BytesIO(png_bytes)).convert('RGB')
  if image.size != (SIZE, SIZE):
    image = image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
  return np.asarray(image, np.uint8)


def _chunks_of_pngs(path):
  images = mimgnet_pickles.load(path, 'tiered-ImageNet images')
  for start in range(0, len(images), CHUNK):
    yield np.stack([_decode(b) for b in images[start:start + CHUNK]])


def _write(chunks, labels, names, out_dir, split):
  """Writes <split>.npy grouped by class (stable within a class) and <split>_offsets.npy."""
  offsets = _offsets(labels, len(names))
  target = np.empty(len(labels), np.int64)  # row i goes to target[i]
  target[np.argsort(labels, kind='stable')] = np.arange(len(labels))
  path = os.path.join(out_dir, f'{split}.npy')
  with files_lib.uint8_array(path, (len(labels), SIZE, SIZE, 3)) as out:
    done = 0
    for chunk in chunks:
      out[target[done:done + len(chunk)]] = chunk
      done += len(chunk)
    if done != len(labels):
      raise TieredError(f'the {split} images number {done}, its labels {len(labels)}')
  with files_lib.atomic(os.path.join(out_dir, f'{split}_offsets.npy')) as tmp:
    np.save(tmp, offsets)
  return names


def _from_folders(folder, out_dir, split):
  classes = sorted(os.listdir(folder))
  files = [(c, os.path.join(folder, name, f)) for c, name in enumerate(classes)
           for f in sorted(os.listdir(os.path.join(folder, name)))]
  labels = np.array([c for c, _ in files], np.int64)

  def chunks():
    for start in range(0, len(files), CHUNK):
      yield np.stack([_decode(open(p, 'rb').read()) for _, p in files[start:start + CHUNK]])
  return _write(chunks(), labels, classes, out_dir, split)


def prepare(source, out_dir):
  """Writes the ragged shards of every split found in `source`; returns {split: class names}."""
  found = {}
  for split in SPLITS:
    npz = os.path.join(source, f'{split}_images.npz')
    pngs = os.path.join(source, f'{split}_images_png.pkl')
    labels_path = os.path.join(source, f'{split}_labels.pkl')
    folder = os.path.join(source, split)
    if os.path.exists(npz) or os.path.exists(pngs):
      if not os.path.exists(labels_path):
        raise TieredError(f'{labels_path} is missing: the images of {split} need their labels')
      labels, names = _labels(labels_path)
      chunks = _stream_npz(npz) if os.path.exists(npz) else _chunks_of_pngs(pngs)
      found[split] = _write(chunks, labels, names, out_dir, split)
    elif os.path.isdir(folder):
      found[split] = _from_folders(folder, out_dir, split)
  if 'train' not in found:
    raise TieredError(f'--source={source} holds no tiered-ImageNet train split '
                      '(train_images.npz or train_images_png.pkl + train_labels.pkl, or train/)')
  return found
