"""Seconds per meta-training / meta-test step at the Table 1 shapes (not a test).

  python bench/step.py [--case=omniglot_1shot_metadrop ...] [--iters=10] [--precision=bfloat16]
                       [--pre_adapt_freq=10] [--profile] [--strategy=mirrored|multi_worker]
                       [--replicas=2] [--threads=N] [--backbone=resnet12 --resnet_widths=...]
                       [--test_metabatch=1] [--test_mc_chunks=K] [--metabatch=B]
                       [--max_rss_mb=MB] [--gradient_checkpointing [--checkpoint_kept_steps=K]]
                       [--bitwise_reproducible]

Times the same step functions, thread settings and pre-adaptation cadence train.py and
evaluate.py use, on synthetic episodes, each case in its own process (so peak_rss_mb is that
case's). Iterations 1..iters are timed; with the default cadence the 10th also computes the
pre-adaptation metrics, which `mean_s` includes and `median_s` does not. A meta-test case
adapts as many episodes per call as evaluate.py does (`episodes_per_call`, from the memory
estimate of eval_lib) and reports seconds per episode. Prints one JSON line per case; with
--profile it also says where the time goes: two more iterations run under tf.profiler, and
`op_s` / `top_ops` give their op time per iteration (per episode) by category and op type.

--max_rss_mb stops a case whose resident memory passes MB (polled every 0.2 s) and prints
`{"case": ..., "exceeded_rss_mb": MB, ...}` instead of its figures: what does not fit, without
swapping the machine. --metabatch overrides a training case's tasks per step.
--bitwise_reproducible turns TF's graph rewrites off as train.py's flag does (`graph_rewrites`
in the JSON line says which): the cost of bitwise-equal reruns.

--strategy=mirrored splits the CPU into --replicas logical devices in one process;
--strategy=multi_worker starts --replicas worker processes on loopback ports (TF_CONFIG), each
with --threads intra-op threads (default: cores / replicas), and the chief reports. Both add
`allreduce_bytes` (the meta-gradient summed across replicas per step) and `allreduce_s` (the
time of that all-reduce alone, measured on the same strategy).
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROWS = {  # dataset, way, shot, inner_lr, meta_lr (SPEC "Experiments")
    'omniglot_1shot': ('omniglot', 20, 1, 0.1, 3e-4),
    'omniglot_5shot': ('omniglot', 20, 5, 0.4, 1e-3),
    'mimgnet_1shot': ('mimgnet', 5, 1, 0.01, 1e-4),
    'mimgnet_5shot': ('mimgnet', 5, 5, 0.01, 1e-4),
}
CASES = [f'{row}_{method}' for row in ROWS for method in ('metadrop', 'maml')]
CASES += [f'{row}_metadrop_test' for row in ROWS] + [f'{row}_maml_test' for row in ROWS]
PROFILED_ITERS = 2


def conv_gflop_per_image(config):
  """Forward conv FLOPs of one image (theta and phi convolutions for metadrop). ResNet-12:
  three 3x3 convs (doubled by phi with noise) and a 1x1 shortcut per stage at its input size."""
  (size, _, c_in) = config.image_shape
  noise = 2 if config.noisy else 1
  total = 0
  if config.backbone == 'resnet12':
    for w in config.widths:
      total += 2 * size * size * (noise * 9 * (c_in * w + 2 * w * w) + c_in * w)
      c_in, size = w, size // 2
    return total / 1e9
  c = config.n_channels
  for _ in range(4):
    total += 2 * size * size * 9 * c_in * noise * c
    c_in, size = c, size // 2
  return total / 1e9


def analytic_gflop(config, test):
  """FLOPs of one step, counting a backward pass as twice its forward.

  Training, per task: S inner steps (forward + backward on the support: 3 F_s), the
  second-order backward through them (6 F_s each), and the adapted query forward and its
  backward (3 F_q); the pre-adaptation query forward (F_q, for logging) is not counted, as
  most steps skip it. Meta-test, one task: 3 S M F_s with M MC copies of the support, plus the
  pre- and post-adaptation query forwards.
  """
  per_image = conv_gflop_per_image(config)
  support = per_image * config.way * config.shot
  query = per_image * config.way * config.query
  if test:
    return 3 * config.n_steps * config.test_mc_samples * support + 2 * query
  return config.metabatch * (9 * config.n_steps * support + 3 * query)


def matmul_peak_gflops(precision):
  """GFLOP/s of a large matmul with TF's default threads (every core): the machine's peak."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  dtype = tf.bfloat16 if precision == 'bfloat16' else tf.float32
  a = tf.random.normal((4096, 4096), dtype=tf.float32)
  a = tf.cast(a, dtype)
  run = tf.function(lambda x: tf.linalg.matmul(x, x))
  run(a).numpy()
  start, n = time.perf_counter(), 10
  for _ in range(n):
    run(a).numpy()
  return 2 * 4096 ** 3 * n / (time.perf_counter() - start) / 1e9


def reset_peak_rss():
  """Resets the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0); False if not."""
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


def peak_rss_mb(field='VmHWM', pid='self'):
  """VmHWM (peak since the last reset_peak_rss) or VmRSS (now) of /proc/<pid>/status in MB
  (this process by default), or None (no /proc, or the process is gone)."""
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith(field + ':'):
          return round(int(line.split()[1]) / 1024)
  except OSError:
    pass
  return None


def cpu_model(cpuinfo: str = '/proc/cpuinfo') -> str:
  """The CPU's model name and widest vector unit (Linux), e.g. 'AMD EPYC (AVX-512, no AMX)', so
  a result line says which machine it came from: one model name covers CPUs whose speeds differ
  by 2-4x here, by their vector units."""
  name, cpu_flags = '', set()
  try:
    with open(cpuinfo) as f:
      for line in f:
        key, _, value = line.partition(':')
        if key.strip() == 'model name' and not name:
          name = value.strip()
        elif key.strip() == 'flags' and not cpu_flags:
          cpu_flags = set(value.split())
  except OSError:
    pass
  name = name or platform.processor() or platform.machine()
  if not cpu_flags:
    return name
  if 'amx_tile' in cpu_flags:
    unit = 'AMX'
  elif 'avx512f' in cpu_flags:
    unit = 'AVX-512, no AMX'
  elif 'avx2' in cpu_flags:
    unit = 'AVX2, no AVX-512'
  else:
    unit = 'no AVX2'
  return f'{name} ({unit})'


def profile(step, first, per):
  """op_profile.summarize of PROFILED_ITERS calls step(first), step(first + 1), ...; op time is
  divided by PROFILED_ITERS * per."""
  import op_profile  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as logdir:
    tf.profiler.experimental.start(logdir)
    for i in range(first, first + PROFILED_ITERS):
      step(i)
    tf.profiler.experimental.stop()
    by_type = op_profile.seconds_by_op_type(op_profile.load_xspace(logdir))
  return op_profile.summarize(by_type, PROFILED_ITERS * per)


def allreduce_seconds(strategy, variables, iters):
  """Median seconds of one all-reduce (sum) of tensors shaped like `variables` across the
  replicas of `strategy`, as the training step does it."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from metadrop_tf.runtime import distribute  # pylint: disable=g-import-not-at-top
  values = [tf.ones(v.shape, v.dtype) for v in variables]
  reduce = tf.function(lambda: distribute.local(
      strategy, strategy.run(lambda: distribute.all_reduce_sum(values))))
  tf.nest.map_structure(lambda t: t.numpy(), reduce())
  times = []
  for _ in range(max(iters, 20)):
    start = time.perf_counter()
    tf.nest.map_structure(lambda t: t.numpy(), reduce())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def run_case(name, iters, precision, pre_adapt_freq, peak, with_profile=False, n_steps=0,
             gradient_checkpointing=False, strategy_name='one_device', replicas=1, threads_=0,
             backbone='conv4', resnet_widths='64,160,320,640', test_metabatch=0,
             test_mc_chunks=1, metabatch=0, checkpoint_kept_steps=0,
             bitwise_reproducible=False):
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from metadrop_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from metadrop_tf import learners  # pylint: disable=g-import-not-at-top
  from metadrop_tf.episodes import sampling  # pylint: disable=g-import-not-at-top
  from metadrop_tf.evaluation import eval_lib  # pylint: disable=g-import-not-at-top
  from metadrop_tf.runtime import distribute  # pylint: disable=g-import-not-at-top
  from metadrop_tf.runtime import rewrites  # pylint: disable=g-import-not-at-top
  from metadrop_tf.runtime import threads  # pylint: disable=g-import-not-at-top
  from metadrop_tf.train import train_step  # pylint: disable=g-import-not-at-top

  row, method = name.split('_')[0] + '_' + name.split('_')[1], name.split('_')[2]
  test = name.endswith('_test')
  dataset, way, shot, inner_lr, meta_lr = ROWS[row]
  config = config_lib.Config(dataset=dataset, way=way, shot=shot, inner_lr=inner_lr,
                             meta_lr=meta_lr, maml=method == 'maml',
                             precision=precision, pre_adapt_freq=pre_adapt_freq,
                             gradient_checkpointing=gradient_checkpointing,
                             checkpoint_kept_steps=checkpoint_kept_steps,
                             backbone=backbone, resnet_widths=resnet_widths,
                             test_metabatch=test_metabatch, test_mc_chunks=test_mc_chunks,
                             strategy=strategy_name, intra_op_threads=threads_,
                             bitwise_reproducible=bitwise_reproducible,
                             cpu_devices=replicas if strategy_name == 'mirrored' else 0
                             ).validate()
  if n_steps:
    config = config.replace(n_steps=n_steps)
  if metabatch:
    config = config.replace(metabatch=metabatch)
  threads.configure(config, training=not test)
  rewrites.configure(config)
  distribute.configure_devices(config)
  strategy = distribute.make_strategy(config)
  replicas = distribute.num_replicas(strategy)
  metabatch = eval_lib.episodes_per_call(config) * replicas if test else config.metabatch
  rng = np.random.default_rng(0)
  images = lambda n: tf.constant(rng.random((metabatch, n) + config.image_shape, np.float32))
  episode = sampling.Episode(images(way * shot), sampling.one_hot_labels(metabatch, way, shot),
                         images(way * config.query),
                         sampling.one_hot_labels(metabatch, way, config.query))
  with strategy.scope():
    learner = learners.build(config)
    optimizer = None if test else train_step.make_optimizer(learner, config)
  if test:
    eval_step = eval_lib.make_eval_step(learner, config.test_mc_samples, 0, strategy=strategy)
    step = lambda i: tf.nest.map_structure(lambda t: t.numpy(),
                                           eval_step(episode, tf.constant(i, tf.int64)))
  else:
    outer_step = train_step.make_outer_step(learner, optimizer, config, strategy)
    step = lambda i: train_step.run_outer_step(outer_step, episode, i, config)
  start = time.perf_counter()
  step(0)
  trace_s = time.perf_counter() - start
  step(0)  # a second call at full size, then count only the steps' own memory from here
  after_trace_mb = peak_rss_mb()
  steady = reset_peak_rss()
  resting_mb = peak_rss_mb('VmRSS')
  times = []
  for i in range(1, iters + 1):
    start = time.perf_counter()
    step(i)
    times.append((time.perf_counter() - start) / (metabatch if test else 1))
  gflop = analytic_gflop(config, test)
  median = float(np.median(times))
  result = {'case': name, 'backbone': backbone, 'precision': precision,
            'n_steps': config.n_steps, 'metabatch': None if test else config.metabatch,
            'resnet_widths': resnet_widths if backbone == 'resnet12' else None,
            'gradient_checkpointing': gradient_checkpointing,
            'checkpoint_kept_steps': checkpoint_kept_steps if gradient_checkpointing else None,
            'test_mc_chunks': test_mc_chunks if test else None, 'median_s': round(median, 3),
            'mean_s': round(float(np.mean(times)), 3),
            'min_s': round(min(times), 3), 'trace_s': round(trace_s, 1),
            'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            'peak_rss_after_trace_mb': after_trace_mb,
            # Peak RSS of the timed steps alone (the traced graph and first-call buffers
            # excluded): what a step's activations cost.
            'steady_peak_rss_mb': peak_rss_mb() if steady else None,
            'step_rss_mb': peak_rss_mb() - resting_mb if steady and resting_mb else None,
            'gflop': round(gflop, 1), 'gflops': round(gflop / median, 1),
            'matmul_peak_gflops': round(peak, 1), 'peak_fraction': round(gflop / median / peak, 3),
            'episodes_per_call': metabatch if test else None, 'cpu': cpu_model(),
            'cores': os.cpu_count(), 'strategy': distribute.strategy_name(config),
            'replicas': replicas, 'intra_op_threads': threads.op_threads(config, not test)[0],
            'graph_rewrites': not rewrites.rewrites_off(),
            'bfc_allocator': os.environ.get(threads.BFC_ALLOCATOR, '').lower() in ('true', '1')}
  if replicas > 1 and not test:
    variables = learner.meta_variables()
    result['allreduce_bytes'] = sum(int(np.prod(v.shape)) * tf.as_dtype(v.dtype).size
                                    for v in variables)
    result['allreduce_s'] = round(allreduce_seconds(strategy, variables, iters), 4)
  if not distribute.is_chief(strategy):
    return None
  if with_profile:
    result.update(profile(step, iters + 1, metabatch if test else 1))
  return result


def run_capped(argv, name, args):
  """Runs one case's process; kills it and prints an `exceeded_rss_mb` line if its resident
  memory passes args.max_rss_mb."""
  start = time.perf_counter()
  process = subprocess.Popen(argv)
  while process.poll() is None:
    rss = peak_rss_mb('VmRSS', process.pid)
    if rss is not None and rss > args.max_rss_mb:
      process.kill()
      process.wait()
      print(json.dumps({
          'case': name, 'backbone': args.backbone, 'n_steps': args.n_steps,
          'gradient_checkpointing': args.gradient_checkpointing,
          'checkpoint_kept_steps': (args.checkpoint_kept_steps
                                    if args.gradient_checkpointing else None),
          'test_mc_chunks': args.test_mc_chunks, 'metabatch': args.metabatch or None,
          'exceeded_rss_mb': args.max_rss_mb, 'rss_at_stop_mb': round(rss),
          'seconds_before_stop': round(time.perf_counter() - start, 1), 'cpu': cpu_model(),
          'cores': os.cpu_count()}), flush=True)
      return
    time.sleep(0.2)
  if process.returncode:
    sys.exit(f'case {name} failed with exit code {process.returncode}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--case', action='append', choices=CASES,
                      help='repeatable; default: every case')
  parser.add_argument('--iters', type=int, default=10)
  parser.add_argument('--precision', default='float32', choices=['float32', 'bfloat16'])
  parser.add_argument('--pre_adapt_freq', type=int, default=10,
                      help='training cases: pre-adaptation metrics every this many iterations')
  parser.add_argument('--profile', action='store_true',
                      help='also report op time by category and op type (op_s, top_ops)')
  parser.add_argument('--n_steps', type=int, default=0, help='inner steps (0: the case\'s)')
  parser.add_argument('--gradient_checkpointing', action='store_true',
                      help='recompute inner steps in the backward (peak_rss_mb vs time)')
  parser.add_argument('--checkpoint_kept_steps', type=int, default=0,
                      help='with --gradient_checkpointing: the last K steps are not recomputed')
  parser.add_argument('--strategy', default='one_device',
                      choices=['one_device', 'mirrored', 'multi_worker'])
  parser.add_argument('--replicas', type=int, default=2,
                      help='mirrored: logical CPU devices; multi_worker: worker processes')
  parser.add_argument('--threads', type=int, default=0,
                      help='intra-op threads per process (0: auto; multi_worker: cores / '
                      'replicas)')
  parser.add_argument('--backbone', default='conv4', choices=['conv4', 'resnet12'])
  parser.add_argument('--test_metabatch', type=int, default=0,
                      help='meta-test cases: episodes per call (0: evaluate.py\'s auto)')
  parser.add_argument('--test_mc_chunks', type=int, default=1,
                      help='meta-test cases: MC samples in this many sequential chunks')
  parser.add_argument('--resnet_widths', default='64,160,320,640')
  parser.add_argument('--metabatch', type=int, default=0,
                      help="tasks per training step (0: the case's, 4)")
  parser.add_argument('--bitwise_reproducible', action='store_true',
                      help='TF graph rewrites (grappler) off, as train.py --bitwise_reproducible')
  parser.add_argument('--max_rss_mb', type=int, default=0,
                      help='stop a case whose resident memory passes this (0: no limit)')
  parser.add_argument('--in_process', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--peak', type=float, default=0.0,
                      help='the machine\'s matmul GFLOP/s if known (skips measuring it)')
  args = parser.parse_args()
  cases = args.case or CASES
  if args.in_process:
    for name in cases:
      result = run_case(name, args.iters, args.precision, args.pre_adapt_freq, args.peak,
                        args.profile, args.n_steps, args.gradient_checkpointing,
                        args.strategy, args.replicas, args.threads, args.backbone,
                        args.resnet_widths, args.test_metabatch, args.test_mc_chunks,
                        args.metabatch, checkpoint_kept_steps=args.checkpoint_kept_steps,
                        bitwise_reproducible=args.bitwise_reproducible)
      if result is not None:
        print(json.dumps(result), flush=True)
    return
  # Before any case: cases may change the threads.
  peak = args.peak or matmul_peak_gflops(args.precision)
  threads_ = args.threads
  if args.strategy == 'multi_worker' and not threads_:
    threads_ = max(1, len(os.sched_getaffinity(0)) // args.replicas)
  for name in cases:
    argv = [sys.executable, __file__, '--in_process', f'--case={name}',
            f'--iters={args.iters}', f'--precision={args.precision}',
            f'--pre_adapt_freq={args.pre_adapt_freq}', f'--peak={peak}',
            f'--n_steps={args.n_steps}', f'--strategy={args.strategy}',
            f'--replicas={args.replicas}', f'--threads={threads_}',
            f'--backbone={args.backbone}', f'--resnet_widths={args.resnet_widths}',
            f'--test_metabatch={args.test_metabatch}',
            f'--test_mc_chunks={args.test_mc_chunks}', f'--metabatch={args.metabatch}',
            f'--checkpoint_kept_steps={args.checkpoint_kept_steps}']
    argv += (['--profile'] if args.profile else []) + (
        ['--gradient_checkpointing'] if args.gradient_checkpointing else []) + (
        ['--bitwise_reproducible'] if args.bitwise_reproducible else [])
    if args.strategy != 'multi_worker':
      if args.max_rss_mb:
        run_capped(argv, name, args)
      else:
        subprocess.run(argv, check=True)
      continue
    from metadrop_tf.runtime import distribute  # pylint: disable=g-import-not-at-top
    workers = [subprocess.Popen(argv, env=dict(os.environ, TF_CONFIG=tf_config))
               for tf_config in distribute.loopback_tf_configs(args.replicas)]
    if any(w.wait() for w in workers):
      sys.exit(f'a worker of case {name} failed')


if __name__ == '__main__':
  main()
