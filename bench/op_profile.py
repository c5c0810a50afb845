"""Where a step's time goes: TF op time from a profiler trace, summed by op type and category.

Used by `bench/step.py --profile`. An op's time is its wall time on the thread that ran it
(including the intra-op threads it waited for); ops that ran side by side add up, so the total
can exceed the step's wall time.
"""

import collections
import glob
import os
import re

# "{op name}:{op type}" is how the TF runtime names an op's event on the host planes; runtime
# trace events ("ExecutorState::Process", "EagerLocalExecute: __inference_step") do not match.
_OP_EVENT = re.compile(r'^[^:\s][^:]*:([A-Za-z_][A-Za-z0-9_]*)$')

CATEGORIES = (  # first match wins
    ('convolution', ('Conv2D',)),
    ('matmul', ('MatMul',)),
    ('random numbers', ('Random',)),
    ('batch norm', ('BatchNorm',)),
    ('pooling', ('Pool',)),
    ('casts', ('Cast',)),
)
OTHER = 'element-wise and other'


def op_type(event_name):
  """The op type of a TF op event ('a/b/Conv2D:_MklNativeConv2D' -> '_MklNativeConv2D'), or None
  for events that are not ops."""
  match = _OP_EVENT.match(event_name)
  return match.group(1) if match else None


def category(op_type_name):
  """The CATEGORIES name an op type falls in, or OTHER."""
  for name, parts in CATEGORIES:
    if any(part in op_type_name for part in parts):
      return name
  return OTHER


def seconds_by_op_type(xspace):
  """Total op time in seconds per op type over the host planes of an XSpace proto."""
  totals = collections.Counter()
  for plane in xspace.planes:
    if not plane.name.startswith('/host:'):
      continue
    for line in plane.lines:
      for event in line.events:
        kind = op_type(plane.event_metadata[event.metadata_id].name)
        if kind is not None:
          totals[kind] += event.duration_ps / 1e12
  return totals


def summarize(by_type, per, top=8):
  """{'op_s': {category: s}, 'top_ops': [[op type, s], ...]}, each divided by `per` (e.g. the
  number of profiled iterations) and largest first, rounded to ms."""
  by_category = collections.Counter()
  for kind, seconds in by_type.items():
    by_category[category(kind)] += seconds
  return {'op_s': {k: round(s / per, 3) for k, s in by_category.most_common()},
          'top_ops': [[k, round(s / per, 3)] for k, s in by_type.most_common(top)]}


def load_xspace(logdir):
  """The XSpace of the newest trace tf.profiler wrote under logdir."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  paths = glob.glob(os.path.join(logdir, '**', '*.xplane.pb'), recursive=True)
  if not paths:
    raise FileNotFoundError(f'no *.xplane.pb under {logdir}: the profiler wrote no trace')
  space = xplane_pb2.XSpace()
  with open(max(paths, key=os.path.getmtime), 'rb') as f:
    space.ParseFromString(f.read())
  return space
