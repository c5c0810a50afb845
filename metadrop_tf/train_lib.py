"""Meta-training: the traced outer step and the eager loop around it (logs, checkpoints, eval)."""

import os
import time

import keras
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from metadrop_tf import checkpoints
from metadrop_tf import data
from metadrop_tf import eval_lib
from metadrop_tf import meta_learner
from metadrop_tf import metrics
from metadrop_tf import model as model_lib

TRAIN_STREAM = 0  # noise seeds of training: fold_seed([seed, 0], iteration)


def make_optimizer(model, config):
  """Keras Adam on the meta-variables, with its slots built now so the step traces once."""
  optimizer = keras.optimizers.Adam(learning_rate=config.meta_lr)
  optimizer.build(model.meta_variables())
  return optimizer


def make_outer_step(model, optimizer, config):
  """tf.function (episode meta-batch, iteration) -> dict of mean 'loss', 'acc', 'loss_pre', ...

  Adapts each task (second order unless config.first_order), clips every meta-gradient element
  to [-grad_clip, grad_clip] and applies Adam. Traced once per episode shape.
  """
  variables = model.meta_variables()
  adaptation = meta_learner.Adaptation.from_config(config)
  base_seed = tf.constant([config.seed, TRAIN_STREAM], tf.int32)

  @tf.function
  def step(episode, iteration):
    seed = meta_learner.fold_seed(base_seed, iteration)
    with tf.GradientTape() as tape:
      out = meta_learner.meta_batch_outputs(model, episode, seed, adaptation)
    grads = tape.gradient(out['loss'], variables)
    grads = [tf.clip_by_value(g, -config.grad_clip, config.grad_clip) for g in grads]
    optimizer.apply_gradients(zip(grads, variables))
    return out
  return step


def noise_summaries(model, images):
  """Mean and std of softplus(alpha) per conv block and of the logit-noise sigma on `images`."""
  out = {}
  for layer, scale in enumerate(model.noise_scales(images)):
    name = f'noise/block{layer}' if layer < 4 else 'noise/logit_sigma'
    out[name + '_mean'] = float(tf.reduce_mean(scale))
    out[name + '_std'] = float(tf.math.reduce_std(scale))
  return out


def _write_scalars(writer, values, step):
  with writer.as_default(step=step):
    for key, value in values.items():
      tf.summary.scalar(key, value)
  writer.flush()


class RunLog:
  """Writes each line to absl logging and appends it, time-stamped, to <workdir>/train.log."""

  def __init__(self, workdir):
    self._file = open(os.path.join(workdir, 'train.log'), 'a')

  def __call__(self, fmt, *args):
    line = fmt % args
    logging.info(line)
    self._file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
    self._file.flush()

  def close(self):
    self._file.close()


def train(config, workdir, progress=True):
  """Trains (or resumes) the run in `workdir` up to config.n_train_iters; returns final step.

  Expects <workdir>/config.json written by the caller. Checkpoints every save_freq iterations,
  at the end, and when interrupted (Ctrl-C), so rerunning the command resumes.
  """
  splits = data.load_splits(config, ('train', config.eval_split))
  model = model_lib.build_model(config)
  optimizer = make_optimizer(model, config)
  ckpt = checkpoints.make_checkpoint(model, optimizer)
  manager = checkpoints.make_manager(ckpt, workdir, config.keep_checkpoints)
  restored = checkpoints.restore(ckpt, workdir, required=False)
  start = int(ckpt.step.numpy())
  log = RunLog(workdir)
  log('%s at iteration %d of %d in %s', 'resumed' if restored else 'started',
               start, config.n_train_iters, workdir)
  writers = {k: tf.summary.create_file_writer(os.path.join(workdir, 'tb', k))
             for k in ('train', 'eval')}
  if not restored:
    with writers['train'].as_default(step=0):
      tf.summary.text('config', '```\n' + config.to_json() + '\n```')
  sampler = data.EpisodeSampler(splits['train'], config.way, config.shot, config.query,
                                config.seed, 'train')
  episodes = iter(data.make_dataset(sampler, config.metabatch, start=start))
  outer_step = make_outer_step(model, optimizer, config)
  eval_step = eval_lib.make_eval_step(
      model, meta_learner.Adaptation.from_config(config, config.eval_mc_samp), config.seed)
  window, tick, step = metrics.WindowAverage(), time.time(), start
  bar = tqdm(total=config.n_train_iters, initial=start, disable=not progress, desc='train',
             dynamic_ncols=True)
  try:
    while step < config.n_train_iters:
      episode = next(episodes)
      window.add(outer_step(episode, tf.constant(step, tf.int64)))
      step += 1
      ckpt.step.assign(step)
      bar.update(1)
      if step % config.log_freq == 0 or step == config.n_train_iters:
        n_window = len(window)
        averages = window.result()
        averages['iters_per_sec'] = n_window / max(time.time() - tick, 1e-9)
        averages['meta_lr'] = float(optimizer.learning_rate)
        averages.update(noise_summaries(model, episode.query_x[0]))
        tick = time.time()
        _write_scalars(writers['train'], averages, step)
        bar.set_postfix(loss=f"{averages['loss']:.3f}", acc=f"{averages['acc']:.3f}")
        log('train | step %d | %.3f it/s | loss %.4f acc %.4f | pre loss %.4f acc %.4f',
                     step, averages['iters_per_sec'], averages['loss'], averages['acc'],
                     averages['loss_pre'], averages['acc_pre'])
      if step % config.eval_freq == 0 or step == config.n_train_iters:
        result = eval_lib.evaluate(
            model, splits[config.eval_split], config, config.eval_split,
            config.eval_batches * config.metabatch, config.eval_mc_samp, progress=False,
            eval_step=eval_step)
        _write_scalars(writers['eval'], {'acc': result['accuracy'] / 100,
                                         'loss': result['loss']}, step)
        log('eval %s | step %d | loss %.4f acc %.2f +- %.2f %%', config.eval_split,
                     step, result['loss'], result['accuracy'], result['ci95'])
      if step % config.save_freq == 0 or step == config.n_train_iters:
        manager.save(checkpoint_number=step)
  except KeyboardInterrupt:
    manager.save(checkpoint_number=step)
    log('interrupted: saved iteration %d to %s; rerun the command to resume',
                 step, manager.directory)
    raise
  finally:
    bar.close()
    log.close()
  return step
