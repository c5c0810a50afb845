"""What meta-training reports: window averages of the step outputs to TensorBoard (tb/train,
tb/eval), train.log and a progress bar; a worker that is not the chief reports nothing."""

import os
import time

from absl import logging
import tensorflow as tf
from tqdm import tqdm

from metadrop_tf import metrics
from metadrop_tf import objectives
from metadrop_tf.nets import network as network_lib


def noise_summaries(network: network_lib.Network, images: tf.Tensor) -> dict:
  """Mean and std of each of the network's noise scales on `images` (none without noise)."""
  out = {}
  for name, scale in network.noise_scales(images).items():
    out[f'noise/{name}_mean'] = float(tf.reduce_mean(scale))
    out[f'noise/{name}_std'] = float(tf.math.reduce_std(scale))
  return out


class RunLog:
  """Writes each line to absl logging and appends it, time-stamped, to <savedir>/train.log."""

  def __init__(self, savedir):
    self._file = open(os.path.join(savedir, 'train.log'), 'a')

  def __call__(self, fmt, *args):
    line = fmt % args
    logging.info(line)
    self._file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
    self._file.flush()

  def close(self) -> None:
    self._file.close()


class Reporter:
  """Averages step outputs over a window and writes them to TensorBoard (tb/train, tb/eval),
  train.log and the progress bar."""

  def __init__(self, savedir, config, start, progress):
    self.log = RunLog(savedir)
    self.objective = objectives.for_config(config)
    self.writers = {k: tf.summary.create_file_writer(os.path.join(savedir, 'tb', k))
                    for k in ('train', 'eval')}
    self.window, self.tick = metrics.WindowAverage(), time.time()
    self.bar = tqdm(total=config.n_train_iters, initial=start, disable=not progress,
                    desc='train', dynamic_ncols=True)
    if not start:
      with self.writers['train'].as_default(step=0):
        tf.summary.text('config', '```\n' + config.to_json() + '\n```')

  def add(self, outputs: dict) -> None:
    self.window.add(outputs)
    self.bar.update(1)

  def train_window(self, iteration: int, extra: dict) -> None:
    """Writes the window's averages plus `extra` scalars and starts a new window."""
    count = len(self.window)
    values = self.window.result()
    values['iters_per_sec'] = count / max(time.time() - self.tick, 1e-9)
    values.update(extra)
    self.tick = time.time()
    self._scalars('train', values, iteration)
    key, pre_key = self.objective.key, self.objective.pre_key
    self.bar.set_postfix(loss=f"{values['loss']:.3f}", **{key: f'{values[key]:.3f}'})
    line = f'train | iteration %d | %.3f it/s | loss %.4f {key} %.4f'
    args = [iteration, values['iters_per_sec'], values['loss'], values[key]]
    if 'loss_pre' in values:  # computed every --pre_adapt_freq iterations, maybe not in a window
      line += f' | pre loss %.4f {key} %.4f'
      args += [values['loss_pre'], values[pre_key]]
    self.log(line, *args)

  def evaluation(self, iteration: int, split: str, result: dict) -> None:
    objective = self.objective
    value = result[objective.result]
    self._scalars('eval', {objective.key: value / objective.scale, 'loss': result['loss']},
                  iteration)
    self.log('eval %s | iteration %d | loss %.4f %s', split, iteration, result['loss'],
             objective.describe(value, result['ci95']).replace('accuracy', 'acc'))

  def _scalars(self, writer, values, iteration):
    with self.writers[writer].as_default(step=iteration):
      for key, value in values.items():
        tf.summary.scalar(key, value)
    self.writers[writer].flush()

  def close(self) -> None:
    self.bar.close()
    self.log.close()


class WorkerReport:
  """The Reporter of a worker that is not the chief: writes nothing (the chief writes the run
  directory), logs its own warnings to absl only."""

  def add(self, outputs: dict) -> None:
    del outputs

  def train_window(self, iteration: int, extra: dict) -> None:
    del iteration, extra

  def evaluation(self, iteration: int, split: str, result: dict) -> None:
    del iteration, split, result

  def log(self, fmt: str, *args: object) -> None:
    logging.info(fmt, *args)

  def close(self) -> None:
    pass
