"""The HTTP layer of serving (serving.py): a Starlette app with TF Serving's REST routes,
/healthz and the page (metadrop_tf/export/page/), one log line per request, body limits, and no
traceback ever reaching a client."""

import asyncio
import json
import math
import os
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import Route

from metadrop_tf.export import serving

DEFAULT_MAX_BODY = 16 << 20  # bytes: a 20-way 5-shot episode of 28x28 images is ~0.5 MB of JSON
PAGE_DIR = os.path.join(os.path.dirname(__file__), 'page')
ServingError = serving.ServingError
PAGE_FILES = {'index.html': 'text/html', 'app.js': 'text/javascript', 'style.css': 'text/css'}


def _json_safe(value):
  """value with non-finite floats as strings (JSON has no NaN)."""
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  if isinstance(value, list):
    return [_json_safe(v) for v in value]
  if isinstance(value, dict):
    return {k: _json_safe(v) for k, v in value.items()}
  return value


def _endpoint(handler):
  """handler (request -> JSON-able answer, or ServingError) as a Starlette endpoint answering
  JSON, one log line per request with status and latency; any other failure is a 500 that
  names only the exception's type, and the server keeps serving."""
  async def wrapped(request: Request):
    start = time.perf_counter()
    try:
      answer, code = await handler(request), 200
    except ServingError as e:
      answer, code = {'error': str(e)}, e.status
    except Exception as e:  # pylint: disable=broad-except  # the server keeps serving
      serving.LOG.exception('internal error on %s', request.url.path)
      answer, code = {'error': f'internal error ({type(e).__name__})'}, 500
    serving.LOG.info('%s %s %d %.1f ms', request.method, request.url.path, code,
             1000 * (time.perf_counter() - start))
    return JSONResponse(answer, status_code=code)
  return wrapped


async def _json_body(request: Request, max_body: int):
  """The request's JSON body; ServingError 400 (not JSON) or 413 (over max_body bytes)."""
  kind = request.headers.get('content-type', '').split(';')[0].strip()
  if kind not in ('application/json', ''):
    raise ServingError(400, f'content type {kind} is not JSON; send application/json')
  size = int(request.headers.get('content-length') or 0)
  if size > max_body:
    raise ServingError(413, f'request body of {size} bytes is over the limit of {max_body}')
  raw = await request.body()
  if len(raw) > max_body:
    raise ServingError(413, f'request body of {len(raw)} bytes is over the limit of {max_body}')
  try:
    return json.loads(raw)
  except (ValueError, UnicodeDecodeError) as e:
    raise ServingError(400, f'the request body is not valid JSON '
                       f'({serving.first_line(e)})') from None


class _Handlers:
  """The endpoints over `models` ({name: Model}); the page's files are read once, here, so
  no request names a path."""

  def __init__(self, models: dict, max_body: int):
    self.models, self.max_body, self.page = models, max_body, {}
    for name, kind in PAGE_FILES.items():
      with open(os.path.join(PAGE_DIR, name), 'rb') as f:
        self.page[name] = (f.read(), kind)

  def find(self, request: Request) -> serving.Model:
    name = request.path_params['name']
    if name not in self.models:
      raise ServingError(404, f'model "{name}" not found; serving '
                         f'{sorted(self.models)}')
    model = self.models[name]
    version = request.path_params.get('version')
    if version is not None and version != str(model.version):
      raise ServingError(404, f'version {version} of model "{name}" not found; serving '
                         f'version {model.version}')
    return model

  async def status(self, request: Request):
    model = self.find(request)
    return {'model_version_status': [{'version': str(model.version), 'state': 'AVAILABLE',
                                      'status': {'error_code': 'OK', 'error_message': ''}}]}

  async def metadata(self, request: Request):
    return serving.metadata(self.find(request))

  async def predict(self, request: Request):
    model = self.find(request)
    if request.path_params['method'] != 'predict':
      raise ServingError(404, 'unknown method; this server answers :predict')
    body = await _json_body(request, self.max_body)
    loop = asyncio.get_running_loop()  # TensorFlow works off the event loop
    return _json_safe(await loop.run_in_executor(None, serving.predict, model, body))

  async def healthz(self, request: Request):
    del request
    return {'status': 'ok', 'models': sorted(self.models)}

  async def page_models(self, request: Request):
    del request
    return {'models': [{'name': m.name, 'version': m.version, 'description': m.description,
                        'signatures': sorted(m.signatures)} for m in self.models.values()]}

  async def page_file(self, request: Request):
    name = request.path_params.get('file', 'index.html')
    if name not in self.page:
      return JSONResponse({'error': f'no page file {name}'}, status_code=404)
    return Response(self.page[name][0], media_type=self.page[name][1])


def make_app(models: dict, max_body: int = DEFAULT_MAX_BODY) -> Starlette:
  """The ASGI app serving `models` ({name: Model}): TF Serving's REST calls, /healthz and
  the page."""
  h = _Handlers(models, max_body)
  prefix = '/v1/models/{name}'
  routes = [Route('/healthz', _endpoint(h.healthz)),
            Route('/page/models', _endpoint(h.page_models), methods=['GET']),
            Route('/', h.page_file, methods=['GET']),
            Route('/page/{file}', h.page_file, methods=['GET'])]
  for base in (prefix, prefix + '/versions/{version}'):
    routes += [Route(base, _endpoint(h.status), methods=['GET']),
               Route(base + '/metadata', _endpoint(h.metadata), methods=['GET']),
               Route(base + ':{method}', _endpoint(h.predict), methods=['POST'])]
  return Starlette(routes=routes)
