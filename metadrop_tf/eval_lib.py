"""Meta-test: adapt on each support set and score the query, over a fixed seeded episode stream."""

import json
import math
import os
import time

from absl import logging
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from metadrop_tf import checkpoints
from metadrop_tf import data
from metadrop_tf import meta_learner
from metadrop_tf import metrics
from metadrop_tf import model as model_lib

EVAL_STREAM = 1  # noise seed of task i: fold_seed([seed, 1], i); training uses stream 0
# Live activations of one support image's first-block map (H x W x C) per MC copy during a
# meta-test inner step: measured ~13.5 (Omniglot) and ~15.5 (miniImageNet) from peak RSS.
ACTIVATIONS_PER_NOISY_IMAGE = 16
LOG_INTERVAL_S = 60  # without a progress bar (not a terminal), a log line this often


def episodes_per_call(config, memory_bytes=None):
  """Meta-test episodes adapted side by side per call: config.test_metabatch, or (auto, 0)
  as many as config.metabatch allows whose estimated activations fit in half of memory_bytes
  (default: this machine's RAM). 4 side by side are ~6% faster per Omniglot 1-shot episode than
  1, but 4 5-shot episodes with 30 MC samples need over 30 GB.
  """
  if config.test_metabatch:
    return config.test_metabatch
  if memory_bytes is None:
    memory_bytes = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  height, width, _ = config.image_shape
  per_episode = (ACTIVATIONS_PER_NOISY_IMAGE * config.test_mc_samples * config.way * config.shot
                 * height * width * config.n_channels * 4)
  return max(1, min(config.metabatch, int(memory_bytes / 2 // per_episode)))


def make_eval_step(model, adaptation, seed):
  """tf.function (episode, index of its first task) -> dict of per-task [B] 'acc', 'loss', ...

  Task i's noise depends only on i, so results do not depend on the meta-batch size.
  No outer tape: meta-test needs only the inner loop's first-order gradients.
  """
  base_seed = tf.constant([seed, EVAL_STREAM], tf.int32)

  @tf.function
  def step(episode, first_task):
    seeds = meta_learner.task_seeds(base_seed, first_task, episode.support_x.shape[0])
    return meta_learner.per_task_outputs(model, episode, seeds, adaptation)
  return step


def evaluate(model, images, config, split, n_episodes, mc_samples, metabatch=None,
             progress=True, eval_step=None, log_interval_s=LOG_INTERVAL_S):
  """Accuracy over the first `n_episodes` tasks of the seeded `split` stream.

  progress: a tqdm bar; without it, a log line (episodes done, running accuracy) at most every
  `log_interval_s` seconds, so an hour-long evaluation under nohup shows it is alive.

  Returns {'accuracy', 'ci95' (percent), 'loss', 'per_episode_accuracy' (fractions), ...}.
  The stream depends only on (config.seed, split), so every call sees the same tasks.
  """
  metabatch = metabatch or config.metabatch
  sampler = data.EpisodeSampler(images, config.way, config.shot, config.query, config.seed,
                                split)
  n_batches = math.ceil(n_episodes / metabatch)
  step = eval_step or make_eval_step(
      model, meta_learner.Adaptation.from_config(config, mc_samples), config.seed)
  outputs = {}
  stream = data.make_dataset(sampler, metabatch, 0, n_batches)
  start = last_log = time.time()
  for index, episode in enumerate(tqdm(stream, total=n_batches, disable=not progress,
                                       desc=f'eval {split}', leave=False)):
    for key, value in step(episode, tf.constant(index * metabatch, tf.int64)).items():
      outputs.setdefault(key, []).extend(value.numpy().tolist())
    if not progress and time.time() - last_log >= log_interval_s:
      last_log, done = time.time(), min(len(outputs['acc']), n_episodes)
      logging.info('eval %s | %d/%d episodes | accuracy so far %.2f %% | %.2f s per episode',
                   split, done, n_episodes, 100 * np.mean(outputs['acc'][:done]),
                   (last_log - start) / done)
  outputs = {k: np.asarray(v[:n_episodes]) for k, v in outputs.items()}
  mean, ci = metrics.mean_ci95(outputs['acc'])
  return {'accuracy': 100 * mean, 'ci95': 100 * ci, 'loss': float(outputs['loss'].mean()),
          'accuracy_pre': 100 * float(outputs['acc_pre'].mean()),
          'per_episode_accuracy': outputs['acc'].tolist(), 'n_episodes': int(n_episodes),
          'mc_samples': int(mc_samples), 'split': split, 'seed': config.seed}


def run(config, workdir, split='test', n_episodes=None, mc_samples=None, checkpoint=None,
        progress=True):
  """Restores a run, evaluates with the reference protocol, writes <workdir>/eval_<split>.json."""
  n_episodes = n_episodes or config.n_test_iters
  mc_samples = 1 if config.maml else (mc_samples or config.n_test_mc_samp)
  images = data.load_splits(config, (split,))[split]
  model = model_lib.build_model(config)
  ckpt = checkpoints.make_checkpoint(model)
  path = checkpoints.restore(ckpt, workdir, checkpoint)
  result = evaluate(model, images, config, split, n_episodes, mc_samples,
                    metabatch=episodes_per_call(config), progress=progress)
  result.update(checkpoint=path, checkpoint_step=int(ckpt.step.numpy()))
  out = os.path.join(workdir, f'eval_{split}.json')
  with open(out + '.tmp', 'w') as f:
    json.dump(result, f, indent=1)
  os.replace(out + '.tmp', out)
  result['path'] = out
  return result
