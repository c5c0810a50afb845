"""bench/op_profile.py: op time by type and category from a profiler trace."""

import os
import sys

import pytest
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'bench'))
import op_profile  # pylint: disable=g-import-not-at-top,wrong-import-position


def _space():
  """Two host lines and a device plane; durations in ps (1e12 = 1 s)."""
  space = xplane_pb2.XSpace()
  host = space.planes.add(name='/host:CPU')
  names = {1: 'block0/Conv2D:_MklNativeConv2D', 2: 'gradient_tape/Conv2DBackpropFilter_4:'
           '_MklNativeConv2DBackpropFilter', 3: 'block0/mul_1:Mul',
           4: 'ExecutorState::Process', 5: 'EagerLocalExecute: __inference_step_12',
           6: 'random/StatelessRandomUniformV2:StatelessRandomUniformV2', 7: 'x/Cast:Cast'}
  for key, name in names.items():
    host.event_metadata[key].name = name
  first, second = host.lines.add(name='tf_Compute/1'), host.lines.add(name='tf_Compute/2')
  for line, events in ((first, [(1, 3.0), (3, 0.5), (4, 9.0), (5, 9.0)]),
                       (second, [(2, 2.0), (3, 1.25), (6, 1.0), (7, 0.25)])):
    for key, seconds in events:
      line.events.add(metadata_id=key, duration_ps=int(seconds * 1e12))
  device = space.planes.add(name='/device:GPU:0')
  device.event_metadata[1].name = 'block0/Conv2D:Conv2D'
  device.lines.add(name='stream').events.add(metadata_id=1, duration_ps=int(5e12))
  return space


def test_op_events_are_told_from_runtime_events():
  assert op_profile.op_type('a/b/Conv2D:_MklNativeConv2D') == '_MklNativeConv2D'
  assert op_profile.op_type('mul:Mul') == 'Mul'
  for runtime in ('ExecutorState::Process', 'EagerLocalExecute: __inference_step_3',
                  'KernelAndDeviceFunc::Run', 'Process'):
    assert op_profile.op_type(runtime) is None


def test_host_op_time_is_summed_by_type_and_category():
  by_type = op_profile.seconds_by_op_type(_space())
  assert by_type == {'_MklNativeConv2D': 3.0, '_MklNativeConv2DBackpropFilter': 2.0,
                     'Mul': 1.75, 'StatelessRandomUniformV2': 1.0, 'Cast': 0.25}
  summary = op_profile.summarize(by_type, per=2, top=2)
  assert summary['op_s'] == {'convolution': 2.5, 'element-wise and other': 0.875,
                             'random numbers': 0.5, 'casts': 0.125}
  assert list(summary['op_s']) == ['convolution', 'element-wise and other', 'random numbers',
                                   'casts']
  assert summary['top_ops'] == [['_MklNativeConv2D', 1.5],
                                ['_MklNativeConv2DBackpropFilter', 1.0]]


def test_a_real_trace_of_a_convolution_is_found(tmp_path):
  x = tf.random.normal([8, 32, 32, 16])
  kernel = tf.random.normal([3, 3, 16, 16])
  conv = tf.function(lambda: tf.nn.conv2d(x, kernel, 1, 'SAME') * 2.0)
  conv()
  tf.profiler.experimental.start(str(tmp_path))
  conv()
  tf.profiler.experimental.stop()
  by_type = op_profile.seconds_by_op_type(op_profile.load_xspace(str(tmp_path)))
  conv_seconds = [s for kind, s in by_type.items() if op_profile.category(kind) == 'convolution']
  assert conv_seconds and min(conv_seconds) > 0, by_type
  assert any(op_profile.category(kind) == op_profile.OTHER
             for kind in by_type), by_type  # the product


def test_a_directory_without_a_trace_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='no \\*.xplane.pb under'):
    op_profile.load_xspace(str(tmp_path))
