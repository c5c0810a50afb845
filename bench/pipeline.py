"""Episodes per second of the tf.data episode pipeline (not a test). Prints one JSON line a case.

  python bench/pipeline.py [--batches=200] [--omniglot_dir=../shared/data/omniglot]

Omniglot cases use the real shards when present (else synthetic ones of the same shape); the
miniImageNet case uses a synthetic memory-mapped shard of the full 64 x 600 x 84 x 84 x 3 size.
"""

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from metadrop_tf.episodes import data  # pylint: disable=g-import-not-at-top,wrong-import-position
from metadrop_tf.episodes import sampling  # pylint: disable=g-import-not-at-top,wrong-import-position


def measure(images, way, shot, query, metabatch, batches):
  sampler = sampling.EpisodeSampler(images, way, shot, query, seed=0)
  stream = iter(sampling.make_dataset(sampler, metabatch))
  for _ in range(10):  # warm-up: pipeline start and prefetch
    next(stream)
  start = time.perf_counter()
  for _ in range(batches):
    next(stream)
  elapsed = time.perf_counter() - start
  return {'meta_batches_per_s': round(batches / elapsed, 1),
          'episodes_per_s': round(batches * metabatch / elapsed, 1)}


def omniglot_images(folder):
  path = os.path.join(folder, 'train.npz')
  if os.path.exists(path):
    return data.load_split(folder, 'train', (28, 28, 1)), 'real'
  rng = np.random.default_rng(0)
  return rng.integers(0, 256, (4800, 20, 28, 28, 1), dtype=np.uint8), 'synthetic'


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--batches', type=int, default=200)
  parser.add_argument('--omniglot_dir', default=os.path.join('..', 'shared', 'data', 'omniglot'))
  args = parser.parse_args()
  omniglot, kind = omniglot_images(args.omniglot_dir)
  for shot in (1, 5):
    row = {'case': f'omniglot_20way_{shot}shot_B4', 'data': kind}
    row.update(measure(omniglot, 20, shot, 15, 4, args.batches))
    print(json.dumps(row), flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'train.npy')
    shard = np.lib.format.open_memmap(path, 'w+', np.uint8, (64, 600, 84, 84, 3))
    shard[:, :, 0, 0, 0] = np.arange(64, dtype=np.uint8)[:, None]
    shard.flush()
    del shard
    images = data.load_split(tmp, 'train', (84, 84, 3))
    row = {'case': 'mimgnet_5way_5shot_B4', 'data': 'synthetic memmap 813 MB'}
    row.update(measure(images, 5, 5, 15, 4, args.batches))
    print(json.dumps(row), flush=True)


if __name__ == '__main__':
  main()
