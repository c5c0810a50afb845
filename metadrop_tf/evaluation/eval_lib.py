"""Meta-test: adapt on each support set and score the query, over a fixed seeded episode stream."""

import json
import math
import os
import tempfile
import time
from typing import Callable

from absl import logging
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from metadrop_tf import config as config_lib
from metadrop_tf import files
from metadrop_tf import learners
from metadrop_tf import metrics
from metadrop_tf import objectives
from metadrop_tf import seeds as seeds_lib
from metadrop_tf.episodes import data
from metadrop_tf.episodes import sampling
from metadrop_tf.evaluation import attacks
from metadrop_tf.evaluation import results
from metadrop_tf.learners import base as learner_base
from metadrop_tf.nets import backbones
from metadrop_tf.runtime import checkpoints
from metadrop_tf.runtime import distribute

LOG_INTERVAL_S = 60  # without a progress bar (not a terminal), a log line this often
# Settings evaluation results do not depend on: changing them continues a partial evaluation.
IRRELEVANT_KEYS = ('n_test_iters', 'test_metabatch', 'strategy', 'cpu_devices',
                   'intra_op_threads', 'inter_op_threads', 'bitwise_reproducible')


def machine_memory_bytes() -> int:
  """This machine's RAM in bytes."""
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def episodes_per_call(config: config_lib.Config, memory_bytes: int | None = None) -> int:
  """Meta-test episodes adapted side by side per call: config.test_metabatch, or (auto, 0)
  as many as config.metabatch allows whose estimated activations fit in half of memory_bytes
  (default: this machine's RAM). 4 side by side are ~6% faster per Omniglot 1-shot episode than
  1, but 4 5-shot episodes with 30 MC samples need over 30 GB.
  """
  if config.test_metabatch:
    return config.test_metabatch
  if memory_bytes is None:
    memory_bytes = machine_memory_bytes()
  per_episode = backbones.meta_test_bytes_per_episode(config)
  return max(1, min(config.metabatch, int(memory_bytes / 2 // per_episode)))


def memory_advice(config: config_lib.Config, memory_bytes: int | None = None) -> str | None:
  """One line suggesting --test_mc_chunks when even one meta-test episode's estimated
  activations (backbones.meta_test_bytes_per_episode) pass half of memory_bytes (default: this
  machine's RAM), or None. The smallest divisor K of the MC samples that brings the estimate
  under a quarter of the memory is suggested."""
  if memory_bytes is None:
    memory_bytes = machine_memory_bytes()
  per_episode = backbones.meta_test_bytes_per_episode(config)
  if per_episode <= memory_bytes / 2:
    return None
  samples, chunks = config.test_mc_samples, config.test_mc_chunks
  whole = per_episode * chunks
  fitting = [k for k in range(1, samples + 1)
             if samples % k == 0 and k > chunks and whole / k <= memory_bytes / 4]
  gib = 2 ** 30
  line = (f'one meta-test episode needs an estimated {per_episode / gib:.1f} GiB of '
          f'activations, more than half of this machine\'s {memory_bytes / gib:.0f} GiB')
  if not fitting:
    return line + '; it may run out of memory (fewer `way`, `shot` or MC samples would help)'
  return (line + f'; if it runs out of memory, pass `test_mc_chunks={fitting[0]}` to take '
          f'the {samples} MC samples {samples // fitting[0]} at a time')


def attack_key(norm: str, eps: float) -> str:
  """The per-task output name of the accuracy under attack, e.g. 'acc_linf_0.03'."""
  return f'acc_{norm}_{eps:g}'


def attacked_accuracies(attack: attacks.Attack) -> Callable:
  """An `extra` for Learner.task_outputs: the query accuracy of the adapted state under PGD
  (attacks.pgd, white-box on its deterministic forward) at each of attack.eps."""
  def extra(learner, state, query_x, query_y, seed):
    loss = lambda images: objectives.cross_entropy(learner.predict(state, images), query_y)
    out = {}
    for i, eps in enumerate(attack.eps):
      adversarial = attacks.pgd(loss, query_x, attack, eps,
                                seeds_lib.fold_seed(seed, seeds_lib.ATTACK + i))
      out[attack_key(attack.norm, eps)] = objectives.accuracy(
          learner.predict(state, adversarial), query_y)
    return out
  return extra


def make_eval_step(learner: learner_base.Learner, mc_samples: int, seed: int,
                   attack: attacks.Attack | None = None,
                   strategy: tf.distribute.Strategy | None = None,
                   extra: Callable | None = None) -> Callable:
  """tf.function (episode, index of its first task) -> dict of per-task [B] 'acc', 'loss', ...
  (and with an attacks.Attack, the accuracy under it at each eps: attack_key(norm, eps); with
  `extra`, an `extra` of Learner.task_outputs, its outputs, [B, ...]).

  Task i's noise depends only on i, so results do not depend on the meta-batch size, nor on
  the replicas of a tf.distribute `strategy` (default: the current one): each adapts its
  share of the B tasks and the results are gathered in task order.
  No outer tape: meta-test needs only the inner loop's first-order gradients.
  """
  strategy = strategy or tf.distribute.get_strategy()
  base_seed = tf.constant([seed, seeds_lib.EVAL], tf.int32)
  extras = [e for e in (attacked_accuracies(attack) if attack else None, extra) if e]
  extra = (lambda *args: {k: v for e in extras for k, v in e(*args).items()}) if extras else None

  def replica_step(episode, first_task):
    share, first = distribute.replica_share(episode)
    seeds = seeds_lib.task_seeds(base_seed, first_task + tf.cast(first, tf.int64),
                                    share.support_x.shape[0])
    return learner.per_task_outputs(share, seeds, mc_samples, extra=extra)

  @tf.function(autograph=False)  # Python control flow only: tracing skips the conversion
  def step(episode, first_task):
    outputs = strategy.run(replica_step, (episode, first_task))
    if distribute.num_replicas(strategy) == 1:
      return outputs
    return {k: strategy.gather(v, axis=0) for k, v in outputs.items()}
  return step


def _load_partial(path, key):
  """Per-task outputs {name: [values]} an interrupted evaluation with this key saved, or {}."""
  try:
    with open(path) as f:
      saved = json.load(f)
  except FileNotFoundError:
    return {}
  except (OSError, ValueError) as e:
    logging.warning('ignoring %s, which cannot be read: %s', path, e)
    return {}
  return saved.get('outputs', {}) if saved.get('key') == key else {}


def evaluate(learner: learner_base.Learner, images: data.Images | None, config: config_lib.Config,
             split: str, n_episodes: int, mc_samples: int, metabatch: int | None = None,
             progress: bool = True, eval_step: Callable | None = None,
             log_interval_s: float = LOG_INTERVAL_S, partial: tuple[str, object] | None = None,
             attack: attacks.Attack | None = None, strategy: tf.distribute.Strategy | None = None,
             keep_outputs: bool = False, after_call: Callable | None = None) -> dict:
  """Accuracy over the first `n_episodes` tasks of the seeded `split` stream.

  progress: a tqdm bar; without it, a log line (episodes done, running accuracy) at most every
  `log_interval_s` seconds, so an hour-long evaluation under nohup shows it is alive.
  partial: (path, key): after every call the per-task outputs so far are saved to path with
  key (what they depend on); a later call with the same key continues after them.
  strategy: a tf.distribute strategy (default: the current one); metabatch episodes per call
  are split among its replicas; only the chief saves `partial` and logs.
  keep_outputs: the result also holds every per-task output, 'outputs': {name: [n_episodes,
  ...] array} (e.g. those of an `extra` of the `eval_step` given).
  after_call: called with no arguments after every call (and its `partial` save) on every
  worker, e.g. a preemption check that may end the evaluation there.

  Returns {'accuracy', 'ci95' (percent), 'loss', 'per_episode_accuracy' (fractions), ...};
  for regression 'mse', 'ci95', 'per_episode_mse', ... (learner.objective names them).
  The stream depends only on (config.seed, split), so every call sees the same tasks.
  """
  metabatch = metabatch or config.metabatch
  strategy = strategy or tf.distribute.get_strategy()
  chief = distribute.is_chief(strategy)
  progress = progress and chief
  sampler = sampling.make_sampler(config, split, images)
  n_batches = math.ceil(n_episodes / metabatch)
  step = eval_step or make_eval_step(learner, mc_samples, config.seed, attack, strategy)
  outputs = _load_partial(*partial) if partial else {}
  objective = learner.objective
  key = objective.key  # 'acc' (classification) or 'mse' (regression)
  first = min(len(outputs.get(key, [])) // metabatch, n_batches)  # meta-batches done
  outputs = {k: v[:first * metabatch] for k, v in outputs.items()}
  if first and chief:
    logging.info('eval %s | continuing after the %d episodes saved in %s', split,
                 first * metabatch, partial[0])
  stream = sampling.make_dataset(sampler, metabatch, first, n_batches - first)
  start = last_log = time.time()
  for index, episode in enumerate(tqdm(stream, total=n_batches, initial=first,
                                       disable=not progress, desc=f'eval {split}',
                                       leave=False), start=first):
    for name, value in step(episode, tf.constant(index * metabatch, tf.int64)).items():
      outputs.setdefault(name, []).extend(value.numpy().tolist())
    if partial and chief:
      files.write_json(partial[0], {'key': partial[1], 'outputs': outputs})
    if after_call:
      after_call()
    if not progress and chief and time.time() - last_log >= log_interval_s:
      last_log, done = time.time(), min(len(outputs[key]), n_episodes)
      logging.info('eval %s | %d/%d episodes | %s so far %s | %.2f s per episode',
                   split, done, n_episodes, objective.result,
                   objective.format(objective.scale * np.mean(outputs[key][:done])),
                   (last_log - start) / (index + 1 - first) / metabatch)
  outputs = {k: np.asarray(v[:n_episodes]) for k, v in outputs.items()}
  result = _result(outputs, objective, n_episodes, mc_samples, split, config.seed, attack)
  return dict(result, outputs=outputs) if keep_outputs else result


def _result(outputs, objective, n_episodes, mc_samples, split, seed, attack=None) -> dict:
  """evaluate's answer from the per-task outputs (name -> [n_episodes])."""
  mean, ci = metrics.mean_ci95(outputs[objective.key])
  name, scale = objective.result, objective.scale
  result = {name: scale * mean, 'ci95': scale * ci, 'loss': float(outputs['loss'].mean()),
            f'{name}_pre': scale * float(outputs[objective.pre_key].mean()),
            f'per_episode_{name}': outputs[objective.key].tolist(), 'n_episodes': int(n_episodes),
            'mc_samples': int(mc_samples), 'split': split, 'seed': seed}
  if attack:
    result['attack'] = dict(attack._asdict(), eps=list(attack.eps),
                            step_sizes=[attack.step_for(e) for e in attack.eps])
    result['attacked'] = []
    for eps in attack.eps:
      values = outputs[attack_key(attack.norm, eps)]
      mean, ci = metrics.mean_ci95(values)
      result['attacked'].append({'eps': eps, 'accuracy': 100 * mean, 'ci95': 100 * ci,
                                 'per_episode_accuracy': values.tolist()})
  return result


def _interrupted(strategy, partial_path):
  """exit_fn of the preemption handler: every worker stops after the same call."""
  if distribute.is_chief(strategy):
    logging.info('interrupted: the episodes done are kept in %s; rerun the same commands to '
                 'continue', partial_path)
  raise KeyboardInterrupt


def run(config: config_lib.Config, savedir: str, split: str = 'test', n_episodes: int | None = None,
        mc_samples: int | None = None, checkpoint: str | None = None, progress: bool = True,
        attack: attacks.Attack | None = None, strategy: tf.distribute.Strategy | None = None,
        overwrite: bool = False, seed: int | None = None) -> dict:
  """Restores a run, evaluates with the reference protocol, writes <savedir>/eval_<split>.json
  (with an attacks.Attack: eval_<split>_pgd_<norm>.json, clean and attacked accuracies).

  Interrupted, it leaves <savedir>/eval_<split>[_pgd_<norm>].partial.json; the same command
  continues from there (any episode count, strategy or worker count; a different checkpoint,
  MC count, attack or setting starts afresh). Under a tf.distribute `strategy` every replica
  adapts its share of each call's episodes; only the chief writes files; a SIGTERM to any
  worker stops all of them after the same call (TF's PreemptionCheckpointHandler, as in
  training), so none waits for a peer that left. An earlier result is
  never lost: see `results.place_result` (`overwrite` replaces one of more episodes).
  `seed` (default: the run's) seeds the episodes and the noise; a result of another seed than
  the run's is eval_<split>_seed<S>[_pgd_<norm>].json, so that runs of different seeds can be
  scored on the same episodes.
  """
  strategy = strategy or tf.distribute.get_strategy()
  seeded = ''
  if seed is not None and seed != config.seed:
    seeded, config = f'_seed{seed}', config.replace(seed=seed)
  n_episodes = n_episodes or config.n_test_iters
  mc_samples = mc_samples if mc_samples and config.noisy else config.test_mc_samples
  images = data.load_splits(config, (split,))[split]
  with strategy.scope():
    learner = learners.build(config)
    ckpt = checkpoints.make_checkpoint(learner)
  path = checkpoints.restore(ckpt, savedir, checkpoint)
  key = dict(config.to_dict(), checkpoint=path, mc_samples=mc_samples, split=split,
             **({'attack': dict(attack._asdict(), eps=list(attack.eps))} if attack else {}))
  for irrelevant in IRRELEVANT_KEYS:  # results do not depend on them
    del key[irrelevant]
  name = f'eval_{split}{seeded}' + (f'_pgd_{attack.norm}' if attack else '')
  partial_path = os.path.join(savedir, f'{name}.partial.json')
  per_call = episodes_per_call(config) * distribute.num_replicas(strategy)
  advice = (memory_advice(config.replace(n_test_mc_samp=mc_samples)) if config.noisy
            else None)
  if advice and distribute.is_chief(strategy):
    logging.warning(advice)
  with tempfile.TemporaryDirectory(prefix='metadrop_') as scratch:
    stop = distribute.preemption_handler(strategy, lambda: None,
                                         lambda: _interrupted(strategy, partial_path), scratch)
    result = evaluate(learner, images, config, split, n_episodes, mc_samples,
                      metabatch=per_call, progress=progress, partial=(partial_path, key),
                      attack=attack, strategy=strategy,
                      after_call=stop and stop.save_checkpoint_if_preempted)
  result.update(checkpoint=path, checkpoint_step=int(ckpt.step.numpy()),
                commit=results.code_commit())
  out = os.path.join(savedir, f'{name}.json')
  if distribute.is_chief(strategy):
    out = results.place_result(out, result, overwrite)
    files.write_json(out, result)
    if os.path.exists(partial_path):
      os.remove(partial_path)
  result['path'] = out
  return result
