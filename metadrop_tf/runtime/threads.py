"""The TF runtime's thread pools and CPU memory allocator: chosen per program, set once before
the first op runs."""

import os

from absl import logging
import tensorflow as tf

from metadrop_tf import config as config_lib

# TF's default CPU allocator returns large buffers to the OS and maps fresh pages on the next
# call; the page faults took a third of a 20-way 5-shot Meta Dropout meta-test episode on one
# core (docs/performance.md). Its BFC allocator keeps freed memory in a pool instead.
BFC_ALLOCATOR = 'TF_CPU_ALLOCATOR_USE_BFC'


def op_threads(config: config_lib.Config, training: bool) -> tuple[int, int]:
  """(intra-op, inter-op) threads for this process; 0 keeps TF's default (one per core).

  Auto (config 0): a training step runs its meta-batch's tasks as independent ops side by side,
  so with at least as many tasks as cores one thread per op keeps every core busy with less
  synchronization: ~10% faster per Omniglot 20-way step on 2 cores than TF's default of two.
  The single-task meta-test step keeps TF's default, which was ~12% faster there.
  """
  intra = config.intra_op_threads
  if not intra and training and config.metabatch >= len(os.sched_getaffinity(0)):
    intra = 1
  return intra, config.inter_op_threads


def configure(config: config_lib.Config, training: bool) -> None:
  """Applies op_threads, and TF's BFC allocator for CPU memory unless the environment sets
  TF_CPU_ALLOCATOR_USE_BFC (false: TF's default allocator). Call before any TF op of the
  process (the runtime fixes both then).

  Called later (a program run from a process that already used TF, e.g. a notebook or a
  test), the pools stay as they are and this is logged, not an error.
  """
  os.environ.setdefault(BFC_ALLOCATOR, 'true')
  intra, inter = op_threads(config, training)
  try:
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
  except RuntimeError:
    logging.info('TF runtime already started: keeping its thread pools (asked for %d intra-op, '
                 '%d inter-op)', intra, inter)
