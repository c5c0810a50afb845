"""TensorFlow Serving's REST API for exported SavedModels (export.py): the models, their
metadata and predictions (this module), answered over HTTP by serving_app.py (Starlette).

  GET  /v1/models/NAME[/versions/V]            the version's status
  GET  /v1/models/NAME[/versions/V]/metadata   its signatures: inputs and outputs, dtypes, shapes
  POST /v1/models/NAME[/versions/V]:predict    {"signature_name": S, "inputs": {...}} (columnar)
                                               or {"instances": [{...}, ...]} (rows)
  GET  /healthz
  GET  /                                       a page to draw new classes and adapt to them
  GET  /page/models                            the served models, for the page

Answers are TF Serving's: {"outputs": ...} for columnar requests, {"predictions": ...} for rows,
{"error": "one line"} with status 400 (the request), 404 (no such model, version or signature),
413 (body over the limit) or 500 (a fault of the server, which keeps serving). The model runs in
a worker thread, so requests are answered concurrently without blocking the event loop. Nothing a
request holds is used as a path.
"""

import json
import logging
import os
import re
from typing import NamedTuple

import numpy as np
import tensorflow as tf

LOG = logging.getLogger('metadrop_tf.export.serving')
DTYPES = {tf.float32: 'DT_FLOAT', tf.int64: 'DT_INT64', tf.int32: 'DT_INT32',
          tf.float64: 'DT_DOUBLE'}


class ServingError(Exception):
  """A request the server answers with `status` and the one-line `message`."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


DESCRIPTION_FILE = os.path.join('assets.extra', 'metadrop_tf.json')  # export_lib writes it


class Model(NamedTuple):
  """One loaded version of a model: its signatures (name -> concrete function) and the
  description export.py writes beside them (None for an export without one)."""
  name: str
  version: int
  signatures: dict
  description: dict | None = None


def find_versions(export_dir: str) -> dict:
  """{version: path} of the SavedModels in export_dir: numbered sub-folders (TF Serving's
  layout NAME/VERSION/saved_model.pb), or export_dir itself as version 1. ValueError if none."""
  if not os.path.isdir(export_dir):
    raise ValueError(f'`export_dir={export_dir}` is not a folder')
  versions = {int(d): os.path.join(export_dir, d) for d in os.listdir(export_dir)
              if d.isdigit() and os.path.exists(os.path.join(export_dir, d, 'saved_model.pb'))}
  if not versions and os.path.exists(os.path.join(export_dir, 'saved_model.pb')):
    versions = {1: export_dir}
  if not versions:
    raise ValueError(f'`export_dir={export_dir}` holds no SavedModel (saved_model.pb, or '
                     'numbered version folders holding one); write one with python export.py')
  return versions


def load(export_dir: str, name: str) -> Model:
  """The newest version in export_dir (find_versions), loaded."""
  versions = find_versions(export_dir)
  version = max(versions)
  loaded = tf.saved_model.load(versions[version])
  return Model(name, version, dict(loaded.signatures), _description(versions[version]))


def _description(path: str) -> dict | None:
  try:
    with open(os.path.join(path, DESCRIPTION_FILE)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _spec(tensor_spec) -> dict:
  dims = [{'size': str(-1 if d is None else d)} for d in tensor_spec.shape.as_list()]
  return {'dtype': DTYPES.get(tensor_spec.dtype, tensor_spec.dtype.name),
          'tensor_shape': {'dim': dims}, 'name': tensor_spec.name}


def metadata(model: Model) -> dict:
  """TF Serving's GetModelMetadata answer for `model`."""
  defs = {}
  for key, fn in model.signatures.items():
    inputs = fn.structured_input_signature[1]
    outputs = fn.structured_outputs
    defs[key] = {'inputs': {k: _spec(v) for k, v in inputs.items()},
                 'outputs': {k: _spec(tf.TensorSpec(v.shape, v.dtype, k))
                             for k, v in outputs.items()},
                 'method_name': 'tensorflow/serving/predict'}
  return {'model_spec': {'name': model.name, 'signature_name': '',
                         'version': str(model.version)},
          'metadata': {'signature_def': {'signature_def': defs}}}


def _tensor(name: str, value, spec) -> tf.Tensor:
  """value (nested lists) as a tensor of spec's dtype and rank; ServingError naming the input."""
  try:
    array = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
  except (TypeError, ValueError, OverflowError):
    kind = 'integers' if spec.dtype.is_integer else 'numbers'
    raise ServingError(400, f'input "{name}" must be a nested list of {kind} of one shape '
                       f'({DTYPES.get(spec.dtype, spec.dtype.name)})') from None
  if not spec.shape.is_compatible_with(array.shape):
    raise ServingError(400, f'input "{name}" has shape {list(array.shape)}; expected '
                       f'{[-1 if d is None else d for d in spec.shape.as_list()]}')
  if array.dtype.kind == 'f' and not np.all(np.isfinite(array)):
    raise ServingError(400, f'input "{name}" holds NaN or infinite values')
  return tf.constant(array)


def _columns(body: dict) -> tuple:
  """(signature name, {input: value}, row format?) of a request body."""
  if not isinstance(body, dict):
    raise ServingError(400, 'the request body must be a JSON object with "inputs" or '
                       '"instances"')
  unknown = sorted(set(body) - {'signature_name', 'inputs', 'instances'})
  if unknown:
    raise ServingError(400, f'unknown request fields {unknown}; expected "signature_name" and '
                       '"inputs" (columns) or "instances" (rows)')
  signature = body.get('signature_name') or 'serving_default'
  if ('inputs' in body) == ('instances' in body):
    raise ServingError(400, 'give exactly one of "inputs" (columns) and "instances" (rows)')
  if 'inputs' in body:
    if not isinstance(body['inputs'], dict):
      raise ServingError(400, '"inputs" must be an object of named inputs')
    return signature, body['inputs'], False
  rows = body['instances']
  if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
    raise ServingError(400, '"instances" must be a non-empty list of objects of named inputs')
  names = set(rows[0])
  if any(set(r) != names for r in rows):
    raise ServingError(400, 'every instance must name the same inputs')
  return signature, {k: [r[k] for r in rows] for k in names}, True


def predict(model: Model, body: object) -> dict:
  """The :predict answer for a parsed JSON body (ServingError for a bad request)."""
  signature, values, rows = _columns(body)
  if signature not in model.signatures:
    raise ServingError(404, f'signature "{signature}" not found; this model has '
                       f'{sorted(model.signatures)}')
  fn = model.signatures[signature]
  specs = fn.structured_input_signature[1]
  missing, extra = sorted(set(specs) - set(values)), sorted(set(values) - set(specs))
  if missing or extra:
    raise ServingError(400, f'signature "{signature}" takes inputs {sorted(specs)}' +
                       (f'; missing {missing}' if missing else '') +
                       (f'; unknown {extra}' if extra else ''))
  tensors = {k: _tensor(k, values[k], specs[k]) for k in specs}
  try:
    outputs = fn(**tensors)
  except tf.errors.InvalidArgumentError as e:  # the signature's own checks name the input
    raise ServingError(400, _assertion(e.message)) from None
  result = {k: v.numpy().tolist() for k, v in outputs.items()}
  if rows:
    n = len(next(iter(result.values())))
    return {'predictions': [{k: v[i] for k, v in result.items()} for i in range(n)]}
  return {'outputs': result}


def _assertion(message: str) -> str:
  """The first message of a failed tf.debugging assertion ('query_x must be float32 ...'),
  else the first informative line of a TF error."""
  found = re.search(r'assertion failed: \[([^\]]*)\]', message)
  if found:
    return found.group(1)
  lines = [line for line in message.splitlines() if 'Graph execution error' not in line]
  return first_line('\n'.join(lines))


def first_line(message: object) -> str:
  """The first non-empty line of message, stripped."""
  lines = [line.strip() for line in str(message).splitlines() if line.strip()]
  return lines[0] if lines else 'invalid input'
