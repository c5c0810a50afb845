"""Raw Omniglot / miniImageNet / tiered-ImageNet -> the NumPy shards metadrop_tf trains on.

  python data/prepare.py --dataset=omniglot [--out_dir=data/omniglot] [--source=PATH]
  python data/prepare.py --dataset=mimgnet --source=PATH [--split_dir=CSV_FOLDER]
  python data/prepare.py --dataset=tiered --source=PATH   (layouts: data/tiered.py)

Omniglot --source may be a folder with the official archives (images_background.zip,
images_evaluation.zip), their extracted folders, or the lossless arrays
(images_background.npz, images_evaluation.npz, alphabets.json); without it the archives are
downloaded into --raw_dir. Output: train.npz / test.npz (uint8 [classes, 20, 28, 28], key
`images`) and splits.json, made exactly as ../shared/data/omniglot/README.md describes.

miniImageNet --source may be a folder `train/ val/ test/ <wnid>/ *.jpg`, a folder of images
with the Ravi & Larochelle split CSVs (`images/` + train.csv, val.csv, test.csv, or the CSVs in
--split_dir), the reference's train.npy / test.npy, or the cache / category-split pickles
(data/mimgnet_pickles.py). Output: train.npy, val.npy, test.npy (uint8 [classes, 600, 84, 84,
3], memory-mappable), splits.json and manifest.json (sizes and sha256 of the shards).
"""

import argparse
import csv
import io
import json
import os
import sys
import zipfile

import numpy as np
from PIL import Image
from tqdm import tqdm

try:  # imported as data.prepare
  from data import download
  from data import mimgnet_pickles
  from data import tiered
except ImportError:  # run as python data/prepare.py: data/ is on sys.path
  import download
  import mimgnet_pickles
  import tiered
from metadrop_tf import files as files_lib  # pylint: disable=g-import-not-at-top
from metadrop_tf.episodes import manifest  # pylint: disable=g-import-not-at-top

OMNIGLOT_SIZE = 28
OMNIGLOT_DRAWERS = 20
OMNIGLOT_SETS = ('background', 'evaluation')
MIMGNET_SIZE = 84
SPLIT_SEED = 0
N_TRAIN_CHARACTERS = 1200


class PrepareError(RuntimeError):
  """Unusable input; one line naming the file or flag."""


def progress_bar(iterable=None, **kwargs):
  """tqdm on a terminal; nothing in a log file (no carriage-return bars under nohup)."""
  return tqdm(iterable, disable=not sys.stderr.isatty(), **kwargs)


def omniglot_to_28(image):
  """A 105x105 Omniglot PIL image -> uint8 [28, 28], strokes high, background 0 (LANCZOS)."""
  small = image.convert('L').resize((OMNIGLOT_SIZE, OMNIGLOT_SIZE), Image.Resampling.LANCZOS)
  return 255 - np.asarray(small, dtype=np.uint8)


def _drawer(file_name):
  """'0709_03.png' -> drawer index 2."""
  return int(os.path.splitext(os.path.basename(file_name))[0].split('_')[-1]) - 1


def _png_files_to_characters(entries, opener):
  """entries: paths 'images_<set>/Alphabet/characterNN/XXXX_YY.png' -> {name: [20, 28, 28]}."""
  grouped = {}
  for entry in entries:
    parts = entry.replace('\\', '/').split('/')
    if len(parts) >= 3 and parts[-1].endswith('.png'):
      grouped.setdefault(f'{parts[-3]}/{parts[-2]}', []).append(entry)
  characters = {}
  for name, files in progress_bar(sorted(grouped.items()), desc='omniglot characters', leave=False):
    out = np.zeros((OMNIGLOT_DRAWERS, OMNIGLOT_SIZE, OMNIGLOT_SIZE), np.uint8)
    drawers = sorted(_drawer(f) for f in files)
    if drawers != list(range(OMNIGLOT_DRAWERS)):
      raise PrepareError(f'character {name} has drawers {drawers}, expected 1..20')
    for f in files:
      with opener(f) as handle:
        out[_drawer(f)] = omniglot_to_28(Image.open(handle))
    characters[name] = out
  return characters


def omniglot_from_zips(paths):
  """{'Alphabet/characterNN': uint8 [20, 28, 28]} from the official archives."""
  characters = {}
  for path in paths:
    try:
      with zipfile.ZipFile(path) as archive:
        opener = lambda name, a=archive: io.BytesIO(a.read(name))
        characters.update(_png_files_to_characters(archive.namelist(), opener))
    except zipfile.BadZipFile:
      raise PrepareError(f'{path} is not a valid zip archive; delete it and download again') \
          from None
  return characters


def omniglot_from_folders(folder):
  """Same, from the extracted archives under `folder`."""
  entries = [os.path.join(root, f) for s in OMNIGLOT_SETS
             for root, _, files in os.walk(os.path.join(folder, f'images_{s}')) for f in files]
  return _png_files_to_characters(entries, lambda path: open(path, 'rb'))


def omniglot_from_arrays(folder):
  """Same, from lossless bool arrays images_<set>.npz ([chars, 20, 105, 105], True = white)
  and alphabets.json (alphabet, set, first character id, count)."""
  with open(os.path.join(folder, 'alphabets.json')) as f:
    alphabets = json.load(f)['alphabets']
  characters = {}
  for set_name in OMNIGLOT_SETS:
    with np.load(os.path.join(folder, f'images_{set_name}.npz')) as archive:
      images = archive['images']
    members = [a for a in alphabets if a[1] == set_name]
    set_first = min(a[2] for a in members)
    for alphabet, _, first, count in progress_bar(members, desc=f'omniglot {set_name}',
                                                  leave=False):
      for nn in range(1, count + 1):
        row = images[first + nn - 1 - set_first]
        characters[f'{alphabet}/character{nn:02d}'] = np.stack(
            [omniglot_to_28(Image.fromarray(im)) for im in row])
  return characters


def build_omniglot(characters, n_train=N_TRAIN_CHARACTERS, seed=SPLIT_SEED):
  """Character split and rotations: returns ({'train': [4n, 20, 28, 28], 'test': ...}, splits).

  names sorted; perm = default_rng(seed).permutation; first n_train characters train, rest
  test; class 4*i + k = character i rotated k*90 degrees counter-clockwise.
  """
  names = sorted(characters)
  if not 0 < n_train < len(names):
    raise PrepareError(f'--n_train_characters={n_train} must be between 1 and '
                       f'{len(names) - 1} (found {len(names)} characters)')
  shuffled = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
  split_names = {'train': shuffled[:n_train], 'test': shuffled[n_train:]}
  arrays = {}
  for split, chosen in split_names.items():
    arrays[split] = np.stack([np.rot90(characters[name], k, axes=(1, 2))
                              for name in chosen for k in range(4)])
  return arrays, dict(seed=seed, **split_names)


def _omniglot_characters(source, raw_dir):
  if source is None:
    return omniglot_from_zips(
        download.fetch_omniglot(raw_dir, progress=sys.stderr.isatty()).values())
  if os.path.exists(os.path.join(source, 'alphabets.json')):
    return omniglot_from_arrays(source)
  zips = [os.path.join(source, f'images_{s}.zip') for s in OMNIGLOT_SETS]
  if all(os.path.exists(z) for z in zips):
    return omniglot_from_zips(zips)
  if all(os.path.isdir(os.path.join(source, f'images_{s}')) for s in OMNIGLOT_SETS):
    return omniglot_from_folders(source)
  raise PrepareError(f'--source={source} holds neither images_background.zip + '
                     'images_evaluation.zip, their extracted folders, nor alphabets.json + '
                     'images_<set>.npz')


def _mimgnet_image(path):
  image = Image.open(path).convert('RGB')
  if image.size != (MIMGNET_SIZE, MIMGNET_SIZE):
    image = image.resize((MIMGNET_SIZE, MIMGNET_SIZE), Image.Resampling.LANCZOS)
  return np.asarray(image, dtype=np.uint8)


def mimgnet_from_folders(root):
  """{split: {wnid: [image paths]}} from root/<split>/<wnid>/*.jpg."""
  out = {}
  for split in ('train', 'val', 'test'):
    split_dir = os.path.join(root, split)
    if os.path.isdir(split_dir):
      out[split] = {wnid: sorted(os.path.join(split_dir, wnid, f)
                                 for f in os.listdir(os.path.join(split_dir, wnid)))
                    for wnid in sorted(os.listdir(split_dir))}
  return out


def mimgnet_from_csv(images_dir, csv_dir):
  """{split: {wnid: [image paths]}} from the split CSVs (filename,label) and a flat folder."""
  out = {}
  for split in ('train', 'val', 'test'):
    path = os.path.join(csv_dir, f'{split}.csv')
    if not os.path.exists(path):
      continue
    classes = {}
    with open(path, newline='') as f:
      for row in csv.DictReader(f):
        classes.setdefault(row['label'], []).append(os.path.join(images_dir, row['filename']))
    out[split] = classes
  return out


def write_mimgnet_split(classes, path):
  """Writes uint8 [classes, n, 84, 84, 3] class by class (never whole in memory)."""
  counts = {wnid: len(files) for wnid, files in classes.items()}
  if len(set(counts.values())) != 1:
    raise PrepareError(f'classes of {os.path.basename(path)} have different image counts '
                       f'{sorted(set(counts.values()))}; every class needs the same number')
  n = next(iter(counts.values()))
  shape = (len(classes), n, MIMGNET_SIZE, MIMGNET_SIZE, 3)
  with files_lib.uint8_array(path, shape) as out:
    for c, (wnid, files) in enumerate(progress_bar(classes.items(),
                                                   desc=os.path.basename(path))):
      for i, file_path in enumerate(files):
        if not os.path.exists(file_path):
          raise PrepareError(f'{file_path} (class {wnid}) is missing')
        out[c, i] = _mimgnet_image(file_path)


def convert_reference_npy(source_path, path):
  """The reference's train.npy / test.npy (uint8 or float in [0, 1]) -> our uint8 layout."""
  array = np.load(source_path, mmap_mode='r')
  per_image = MIMGNET_SIZE * MIMGNET_SIZE * 3
  if array.size % per_image or array.ndim < 2:
    raise PrepareError(f'{source_path} has shape {array.shape}; expected [classes, images, ...] '
                       f'with {per_image} values per image')
  shape = (array.shape[0], array.size // per_image // array.shape[0],
           MIMGNET_SIZE, MIMGNET_SIZE, 3)
  with files_lib.uint8_array(path, shape) as out:
    for c in range(shape[0]):
      block = np.asarray(array[c]).reshape(shape[1:])
      out[c] = block if block.dtype == np.uint8 else np.clip(np.rint(block * 255), 0, 255)


def write_mimgnet_pickles(found, out_dir):
  """Writes <split>.npy [classes, n, 84, 84, 3] (classes sorted by name), splits.json and the
  manifest from mimgnet_pickles.find's {split: (path, reader)}, one split in memory at a time."""
  names = {}
  for split, (path, reader) in found.items():
    classes = mimgnet_pickles.read(path, reader)
    counts = sorted({len(images) for images in classes.values()})
    if len(counts) != 1:
      raise PrepareError(f'classes of {path} have different image counts {counts}; every '
                         'class needs the same number')
    shape = (len(classes), counts[0], MIMGNET_SIZE, MIMGNET_SIZE, 3)
    with files_lib.uint8_array(os.path.join(out_dir, f'{split}.npy'), shape) as out:
      for c, images in enumerate(classes.values()):
        out[c] = images
    names[split] = list(classes)
  files_lib.write_json(os.path.join(out_dir, 'splits.json'), names)
  manifest.write(out_dir, [f'{split}.npy' for split in found])


def prepare_mimgnet(source, out_dir, split_dir=None):
  if source is None:
    raise PrepareError('miniImageNet has no official download: pass --source=FOLDER with '
                       'train/val/test/<wnid>/*.jpg, images/ + split CSVs, or train.npy/test.npy')
  if os.path.isdir(os.path.join(source, 'train')):
    splits = mimgnet_from_folders(source)
  elif os.path.exists(os.path.join(split_dir or source, 'train.csv')):
    images_dir = os.path.join(source, 'images')
    splits = mimgnet_from_csv(images_dir if os.path.isdir(images_dir) else source,
                              split_dir or source)
  elif mimgnet_pickles.find(source):
    write_mimgnet_pickles(mimgnet_pickles.find(source), out_dir)
    return
  elif os.path.exists(os.path.join(source, 'train.npy')):
    for split in ('train', 'val', 'test'):
      if os.path.exists(os.path.join(source, f'{split}.npy')):
        convert_reference_npy(os.path.join(source, f'{split}.npy'),
                              os.path.join(out_dir, f'{split}.npy'))
    manifest.write(out_dir, [f for f in os.listdir(out_dir) if f.endswith('.npy')])
    return
  else:
    raise PrepareError(f'--source={source} has no train/ folder, train.csv, train.npy or '
                       'miniImageNet pickles (mini-imagenet-cache-train.pkl or '
                       'miniImageNet_category_split_train_phase_train.pickle)')
  for split, classes in splits.items():
    write_mimgnet_split(classes, os.path.join(out_dir, f'{split}.npy'))
  files_lib.write_json(os.path.join(out_dir, 'splits.json'),
              {split: sorted(classes) for split, classes in splits.items()})
  manifest.write(out_dir, [f'{split}.npy' for split in splits])


def prepare_omniglot(source, out_dir, raw_dir, n_train=N_TRAIN_CHARACTERS):
  arrays, splits = build_omniglot(_omniglot_characters(source, raw_dir), n_train)
  for split, images in arrays.items():
    with files_lib.atomic(os.path.join(out_dir, f'{split}.npz')) as tmp:
      np.savez_compressed(tmp, images=images)
  files_lib.write_json(os.path.join(out_dir, 'splits.json'), splits)
  manifest.write(out_dir, [f'{split}.npz' for split in arrays])
  return arrays


def prepare_tiered(source, out_dir):
  if source is None:
    raise PrepareError('tiered-ImageNet has no official download: pass --source=FOLDER with '
                       '<split>_images.npz or <split>_images_png.pkl + <split>_labels.pkl, or '
                       '<split>/<class>/ image folders')
  names = tiered.prepare(source, out_dir)
  files_lib.write_json(os.path.join(out_dir, 'splits.json'), names)
  manifest.write(out_dir, [f'{split}{suffix}.npy' for split in names
                           for suffix in ('', '_offsets')])


def is_prepared(out_dir):
  return all(any(os.path.exists(os.path.join(out_dir, f'{s}.{ext}')) for ext in ('npy', 'npz'))
             for s in ('train', 'test'))


class UserExit(SystemExit):
  """Exit status 2 (as argparse's own errors) after the one-line error `message`."""

  def __init__(self, message):
    super().__init__(2)
    self.message = message

  def __str__(self):
    return self.message


def _fail(message):
  """A user error: one line on stderr, exit status 2."""
  print(f'error: {message}', file=sys.stderr)
  raise UserExit(message)


class _Parser(argparse.ArgumentParser):
  """argparse with the programs' one-line errors (exit status 2) instead of a usage block."""

  def error(self, message):
    _fail(f'{message} (--help lists the options)')


def main(argv):
  parser = _Parser(description='Prepare the Omniglot, miniImageNet or tiered-ImageNet shards '
                               'that train.py reads (docs/data.md).')
  parser.add_argument('--dataset', default='omniglot', choices=['omniglot', 'mimgnet', 'tiered'],
                      help='the dataset to prepare (default: omniglot)')
  parser.add_argument('--out_dir', default=None, help='default: data/<dataset>')
  parser.add_argument('--source', default=None,
                      help='a folder of raw files (skips the download); its layouts per dataset '
                           'are in docs/data.md. Omniglot without it is downloaded; '
                           'miniImageNet and tiered-ImageNet need it')
  parser.add_argument('--raw_dir', default=os.path.join('data', 'raw'),
                      help='where downloaded archives go (default: data/raw)')
  parser.add_argument('--split_dir', default=None,
                      help="miniImageNet: the folder of Ravi & Larochelle's split CSVs, when "
                           'they are not in --source')
  parser.add_argument('--n_train_characters', type=int, default=N_TRAIN_CHARACTERS,
                      help=f'Omniglot: characters for meta-training (default: '
                           f'{N_TRAIN_CHARACTERS}; the rest are for meta-test)')
  parser.add_argument('--overwrite', action='store_true',
                      help='rebuild shards that are already there')
  args = parser.parse_args(argv)
  out_dir = args.out_dir or os.path.join('data', args.dataset)
  if is_prepared(out_dir) and not args.overwrite:
    print(f'{out_dir} already holds train and test shards (--overwrite to rebuild)')
    return
  if args.source is not None and not os.path.isdir(args.source):
    _fail(f'--source={args.source} is not a folder')
  created = [d for d in (out_dir, args.raw_dir) if not os.path.exists(d)]
  os.makedirs(out_dir, exist_ok=True)
  try:
    if args.dataset == 'omniglot':
      prepare_omniglot(args.source, out_dir, args.raw_dir, args.n_train_characters)
    elif args.dataset == 'tiered':
      prepare_tiered(args.source, out_dir)
    else:
      prepare_mimgnet(args.source, out_dir, args.split_dir)
  except (PrepareError, download.DownloadError, mimgnet_pickles.PickleError,
          tiered.TieredError) as e:
    for folder in created:  # leave no empty folders behind that look like a dataset
      if os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)
    _fail(str(e))
  write_channel_statistics(args.dataset, out_dir)
  print(f'wrote {args.dataset} shards to {out_dir}')


def write_channel_statistics(dataset, out_dir):
  """<out_dir>/channel_stats.json: per-channel mean and std of the train shard (--normalize)."""
  from metadrop_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from metadrop_tf.episodes import data  # pylint: disable=g-import-not-at-top
  info = config_lib.DATASETS[dataset]
  train = data.load_split(out_dir, 'train', info.image_shape, dataset)
  mean, std = data.compute_channel_statistics(train)
  files_lib.write_json(os.path.join(out_dir, data.CHANNEL_STATS_FILE), {'mean': mean, 'std': std})


if __name__ == '__main__':
  main(sys.argv[1:])
