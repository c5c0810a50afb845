"""A bounded load test of serve.py on loopback, and what batching episodes could gain (not a test).

  python bench/serve_load.py --export_dir=DIR [--requests=200] [--clients=8] [--way=5]
                             [--shot=1] [--query=5] [--episodes=8] [--batch_probe=4]
                             [--out=bench/results/serve_load.json]

Starts `serve.py --export_dir=DIR` on a free loopback port, then sends `--requests` :predict
requests from `--clients` concurrent asyncio clients (httpx), each an N-way K-shot episode of
random pixels cycled from `--episodes` distinct ones, and checks every answer: status 200 and
the labels the SavedModel gives in this process for that episode (a request that fails, times
out or answers otherwise counts as failed; none may be lost). Prints and writes one JSON
object: requests per second, latency p50/p90/p99/max (ms), failed, the CPU.

--batch_probe=B measures, in this process, the most a --batch_window_ms could win: the time of
B episodes called one after another, of B called from 2 threads at once (what the server does
with concurrent requests), and of one call holding B episodes' images (the same work in one
larger batch, the best case of grouping; it changes what is computed, so it only bounds it).
"""

import argparse
import asyncio
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from step import cpu_model  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position


def episodes(n, way, shot, query, shape, seed=0):
  """n episodes {support_x, support_labels, query_x} of random pixels (lists, JSON-ready)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  return [{'support_x': rng.random((way * shot, *shape)).round(3).tolist(),
           'support_labels': np.repeat(np.arange(way), shot).tolist(),
           'query_x': rng.random((way * query, *shape)).round(3).tolist()} for _ in range(n)]


def _tensors(episode):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {k: tf.constant(v, tf.int64 if k == 'support_labels' else tf.float32)
          for k, v in episode.items()}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


async def _load(url, bodies, expected, n_requests, n_clients, timeout):
  import httpx  # pylint: disable=g-import-not-at-top
  latencies, failures, next_index = [], [], iter(range(n_requests))

  async def client(http):
    for i in next_index:
      start = time.perf_counter()
      try:
        answer = await http.post(url, json={'inputs': bodies[i % len(bodies)]})
        ok = (answer.status_code == 200 and
              answer.json()['outputs']['labels'] == expected[i % len(bodies)])
        reason = None if ok else f'status {answer.status_code}: {answer.text[:200]}'
      except httpx.HTTPError as e:
        reason = f'{type(e).__name__}: {e}'
      latencies.append(time.perf_counter() - start)
      if reason:
        failures.append(reason)

  async with httpx.AsyncClient(timeout=timeout) as http:
    start = time.perf_counter()
    await asyncio.gather(*(client(http) for _ in range(n_clients)))
    return time.perf_counter() - start, latencies, failures


def _percentile(values, q):
  ordered = sorted(values)
  return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _wait_for(base, proc, timeout=300):
  import httpx  # pylint: disable=g-import-not-at-top
  deadline = time.time() + timeout
  while True:
    try:
      if httpx.get(base + '/healthz', timeout=5).status_code == 200:
        return
    except httpx.HTTPError:
      pass
    if proc.poll() is not None or time.time() > deadline:
      raise SystemExit(f'serve.py did not come up: {proc.stderr.read()[-2000:]}')
    time.sleep(0.5)


def batch_probe(signature, bodies, b):
  """Seconds of b episodes: sequential calls, 2 threads, one call with b episodes' images."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  batch = [_tensors(e) for e in bodies[:b]]
  way = max(bodies[0]['support_labels']) + 1
  merged = {'support_x': np.concatenate([e['support_x'] for e in bodies[:b]]),
            'support_labels': np.concatenate([np.asarray(e['support_labels'])
                                              for e in bodies[:b]]) % way,
            'query_x': np.concatenate([e['query_x'] for e in bodies[:b]])}
  merged = _tensors({k: v.tolist() for k, v in merged.items()})
  for tensors in batch + [merged]:  # warm up every shape
    signature(**tensors)

  def timed(fn, repeats=3):
    best = float('inf')
    for _ in range(repeats):
      start = time.perf_counter()
      fn()
      best = min(best, time.perf_counter() - start)
    return best

  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    return {'episodes': b,
            'sequential_s': timed(lambda: [signature(**t) for t in batch]),
            'two_threads_s': timed(lambda: list(pool.map(lambda t: signature(**t), batch))),
            'one_call_s': timed(lambda: signature(**merged))}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--export_dir', required=True)
  parser.add_argument('--requests', type=int, default=200)
  parser.add_argument('--clients', type=int, default=8)
  parser.add_argument('--way', type=int, default=5)
  parser.add_argument('--shot', type=int, default=1)
  parser.add_argument('--query', type=int, default=5)
  parser.add_argument('--episodes', type=int, default=8)
  parser.add_argument('--batch_probe', type=int, default=0)
  parser.add_argument('--timeout', type=float, default=300)
  parser.add_argument('--out', default='')
  args = parser.parse_args()

  sys.path.insert(0, REPO)
  from metadrop_tf.cli import quiet  # pylint: disable=g-import-not-at-top
  quiet.start([])
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from metadrop_tf.export import serving  # pylint: disable=g-import-not-at-top
  model = serving.load(args.export_dir, 'bench')
  signature = model.signatures['serving_default']
  shape = tuple(model.description['input_shape']) if model.description else (28, 28, 1)
  bodies = episodes(args.episodes, args.way, args.shot, args.query, shape)
  expected = [signature(**_tensors(e))['labels'].numpy().tolist() for e in bodies]

  port = _free_port()
  proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'serve.py'),
                           f'--export_dir={args.export_dir}', '--model_name=bench',
                           f'--port={port}'], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  try:
    base = f'http://127.0.0.1:{port}'
    _wait_for(base, proc)
    url = base + '/v1/models/bench:predict'
    asyncio.run(_load(url, bodies, expected, args.episodes, 1, args.timeout))  # warm up
    seconds, latencies, failures = asyncio.run(
        _load(url, bodies, expected, args.requests, args.clients, args.timeout))
  finally:
    proc.terminate()
    proc.wait(timeout=60)
  ms = [1000 * t for t in latencies]
  result = {'export_dir': args.export_dir, 'episode': f'{args.way}-way {args.shot}-shot '
            f'{args.query}-query', 'requests': args.requests, 'clients': args.clients,
            'answered': len(latencies), 'failed': len(failures),
            'requests_per_s': round(len(latencies) / seconds, 2),
            'latency_ms': {f'p{q}': round(_percentile(ms, q), 1) for q in (50, 90, 99)}
            | {'max': round(max(ms), 1)},
            'cpu': cpu_model(), 'cores': os.cpu_count(), 'tensorflow': tf.__version__}
  if failures:
    result['first_failures'] = failures[:3]
  if args.batch_probe:
    result['batch_probe'] = {k: round(v, 4) if isinstance(v, float) else v
                             for k, v in batch_probe(signature, bodies, args.batch_probe).items()}
  print(json.dumps(result))
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(result, f, indent=1)
  sys.exit(1 if failures or len(latencies) != args.requests else 0)


if __name__ == '__main__':
  main()
