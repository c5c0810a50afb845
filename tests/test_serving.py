"""The TF Serving REST API over exported SavedModels. Every request test runs twice: against the
app in-process (Starlette's test client, the quick lane) and against serve.py started in a
subprocess on a free loopback port, spoken to over HTTP (marked slow)."""

import concurrent.futures
import json
import os
import signal
import subprocess
import sys

import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient
import tensorflow as tf

import helpers
from metadrop_tf import learners
from metadrop_tf.export import export_lib
from metadrop_tf.export import serving
from metadrop_tf.export import serving_app
from metadrop_tf.runtime import checkpoints

pytestmark = pytest.mark.xdist_group('serving')  # one worker: module fixtures built once
WAY, SHOT, QUERY = 3, 1, 2


@pytest.fixture(scope='module')
def export_dir(tmp_path_factory):
  """A tiny Meta Dropout run's SavedModel, in TF Serving's layout NAME/1/."""
  root = tmp_path_factory.mktemp('serving')
  data_dir, savedir = str(root / 'data'), str(root / 'run')
  helpers.write_tiny_shards(data_dir)
  config = helpers.tiny_config(data_dir, n_test_mc_samp=2)
  ckpt = checkpoints.make_checkpoint(learners.build(config))
  checkpoints.make_manager(ckpt, savedir).save(checkpoint_number=1)
  checkpoints.write_config(savedir, config)
  path = str(root / 'omni' / '1')
  export_lib.export_savedmodel(config, savedir, path)
  return str(root / 'omni')


def _episode(seed=0, size=28):
  rng = np.random.default_rng(seed)
  return {'support_x': rng.random((WAY * SHOT, size, size, 1)).round(3).tolist(),
          'support_labels': list(np.repeat(np.arange(WAY), SHOT).tolist()),
          'query_x': rng.random((WAY * QUERY, size, size, 1)).round(3).tolist()}


MAX_BODY = 2 << 20


@pytest.fixture(scope='module',
                params=['in_process', pytest.param('server', marks=pytest.mark.slow)])
def client(request, export_dir):
  """An HTTP client (httpx API) of the served export: the app in this process, or serve.py in a
  subprocess on loopback. The server is started before any test's conftest tracking, so it
  lives for the module and is stopped here."""
  if request.param == 'in_process':
    model = serving.load(export_dir, 'omni')
    yield TestClient(serving_app.make_app({'omni': model}, max_body=MAX_BODY))
    return
  proc, base = helpers.start_server(f'--export_dir={export_dir}', f'--max_body_bytes={MAX_BODY}')
  with httpx.Client(base_url=base, timeout=120) as http:
    yield http
  proc.terminate()
  _, err = proc.communicate(timeout=60)
  assert 'Traceback' not in err, err[-3000:]


def test_status_metadata_and_health(client):
  assert client.get('/healthz').json() == {'status': 'ok', 'models': ['omni']}
  status = client.get('/v1/models/omni').json()
  assert status['model_version_status'][0]['version'] == '1'
  assert status['model_version_status'][0]['state'] == 'AVAILABLE'
  meta = client.get('/v1/models/omni/versions/1/metadata').json()
  defs = meta['metadata']['signature_def']['signature_def']
  assert set(defs) == {'serving_default', 'onehot', 'spread'}  # spread: a noisy learner's
  assert set(defs['spread']['outputs']) == {'probabilities', 'labels', 'sample_probabilities'}
  assert defs['serving_default']['inputs']['support_labels']['dtype'] == 'DT_INT64'
  assert client.get('/v1/models/other').status_code == 404
  assert client.get('/v1/models/omni/versions/2').status_code == 404


def test_predict_equals_the_savedmodel_called_directly(client, export_dir):
  episode = _episode()
  answer = client.post('/v1/models/omni:predict', json={'inputs': episode})
  assert answer.status_code == 200, answer.text
  direct = tf.saved_model.load(os.path.join(export_dir, '1')).signatures['serving_default'](
      support_x=tf.constant(episode['support_x'], tf.float32),
      support_labels=tf.constant(episode['support_labels'], tf.int64),
      query_x=tf.constant(episode['query_x'], tf.float32))
  np.testing.assert_allclose(answer.json()['outputs']['probabilities'],
                             direct['probabilities'].numpy(), rtol=1e-6, atol=1e-7)
  assert answer.json()['outputs']['labels'] == direct['labels'].numpy().tolist()


def test_onehot_signature(client):
  episode = _episode()
  episode['support_y'] = np.eye(WAY)[episode.pop('support_labels')].tolist()
  answer = client.post('/v1/models/omni:predict',
                       json={'signature_name': 'onehot', 'inputs': episode})
  assert answer.status_code == 200, answer.text
  assert np.asarray(answer.json()['outputs']['probabilities']).shape == (WAY * QUERY, WAY)


def _bad(episode_changes=None, drop=None, **body):
  episode = _episode()
  episode.update(episode_changes or {})
  if drop:
    del episode[drop]
  return {'inputs': episode, **body}


BAD = [
    ('malformed json', dict(content=b'{"inputs": [', headers={'content-type': 'application/json'}),
     400, 'not valid JSON'),
    ('wrong content type', dict(content=b'x', headers={'content-type': 'text/plain'}), 400,
     'content type text/plain is not JSON'),
    ('missing input', dict(json=_bad(drop='query_x')), 400, "missing ['query_x']"),
    ('extra input', dict(json=_bad({'extra': [1]})), 400, "unknown ['extra']"),
    ('wrong rank', dict(json=_bad({'query_x': [[0.5]]})), 400, 'input "query_x" has shape [1, 1]'),
    ('wrong dtype', dict(json=_bad({'support_labels': ['a', 'b', 'c']})), 400,
     'input "support_labels" must be a nested list of integers'),
    ('ragged', dict(json=_bad({'query_x': [[[[0.5]]], [[0.5]]]})), 400, 'input "query_x"'),
    ('nan pixel', dict(content=json.dumps(_bad({'query_x': [[[[float('nan')]]]]})).encode(),
                       headers={'content-type': 'application/json'}), 400,
     'input "query_x" holds NaN'),
    ('out of range pixel', dict(json=_bad({'query_x': [[[[2.0]]]]})), 400, 'query_x'),
    ('too many classes', dict(json=_bad({'support_labels': [0, 1, 7]})), 400, 'support_labels'),
    ('no inputs', dict(json={'signature_name': 'serving_default'}), 400,
     'give exactly one of "inputs"'),
    ('unknown signature', dict(json=_bad(signature_name='nope')), 404,
     'signature "nope" not found'),
    ('unknown field', dict(json={'inputs': {}, 'foo': 1}), 400, "unknown request fields ['foo']"),
    ('body over the limit', dict(content=b' ' * (MAX_BODY + 1),
                                 headers={'content-type': 'application/json'}), 413,
     'over the limit'),
    ('rows of different sizes', dict(json={'instances': [
        {'support_x': [[[0.1]]], 'support_labels': 0, 'query_x': [[[0.1]]]},
        {'support_x': [[[0.1]]], 'query_x': [[[0.1]]]}]}), 400, 'every instance must name'),
]


@pytest.mark.parametrize('request_kwargs, status, words', [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_requests_are_one_line_errors_naming_the_input(client, request_kwargs, status,
                                                           words):
  answer = client.post('/v1/models/omni:predict', **request_kwargs)
  assert answer.status_code == status, answer.text
  error = answer.json()['error']
  assert words in error and '\n' not in error, error
  assert client.post('/v1/models/omni:predict', json={'inputs': _episode()}).status_code == 200


def test_an_internal_failure_is_a_500_and_the_server_keeps_serving(export_dir, monkeypatch):
  """In-process only: no request can make the model fail, so the failure is patched in."""
  model = serving.load(export_dir, 'omni')
  client = TestClient(serving_app.make_app({'omni': model}), raise_server_exceptions=False)
  real = serving.predict
  monkeypatch.setattr(serving, 'predict', lambda *a: 1 / 0)
  answer = client.post('/v1/models/omni:predict', json={'inputs': _episode()})
  assert answer.status_code == 500 and answer.json() == {'error': 'internal error '
                                                         '(ZeroDivisionError)'}
  monkeypatch.setattr(serving, 'predict', real)
  assert client.post('/v1/models/omni:predict', json={'inputs': _episode()}).status_code == 200


def test_spread_adds_the_probabilities_under_each_noise_sample(client):
  episode = _episode(3)
  plain = client.post('/v1/models/omni:predict', json={'inputs': episode}).json()['outputs']
  spread = client.post('/v1/models/omni:predict',
                       json={'signature_name': 'spread', 'inputs': episode}).json()['outputs']
  np.testing.assert_allclose(spread['probabilities'], plain['probabilities'], rtol=1e-6)
  samples = np.array(spread['sample_probabilities'])
  assert samples.shape == (export_lib.SPREAD_SAMPLES, WAY * QUERY, WAY)
  np.testing.assert_allclose(samples.sum(-1), 1, rtol=1e-5)
  assert np.ptp(samples, axis=0).max() > 1e-4  # adapting under other noise moves the answer


def test_the_page_and_its_model_list(client):
  page = client.get('/')
  assert page.status_code == 200 and page.headers['content-type'].startswith('text/html')
  assert '<script src="/page/app.js">' in page.text
  assert client.get('/page/app.js').headers['content-type'].startswith('text/javascript')
  assert client.get('/page/style.css').status_code == 200
  for path in ('/page/serving.py', '/page/..%2Fserving.py', '/page/%2Fetc%2Fpasswd'):
    assert client.get(path).status_code == 404, path
  (model,) = client.get('/page/models').json()['models']
  assert model['name'] == 'omni' and model['version'] == 1
  assert model['signatures'] == ['onehot', 'serving_default', 'spread']
  assert model['description'] == {
      'task': 'classification', 'dataset': 'omniglot', 'way': WAY, 'shot': SHOT,
      'input_shape': [28, 28, 1], 'mc_samples': 2,
      'signatures': ['onehot', 'serving_default', 'spread']}


def test_a_folder_without_a_savedmodel_is_refused(tmp_path):
  with pytest.raises(ValueError, match='holds no SavedModel'):
    serving.find_versions(str(tmp_path))


@pytest.mark.slow
def test_a_real_server_answers_concurrently_and_stops_gracefully(export_dir):
  proc, base = helpers.start_server(f'--export_dir={export_dir}')
  episodes = [_episode(seed) for seed in range(8)]
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    answers = list(pool.map(
        lambda e: helpers.http_call(base + '/v1/models/omni:predict', {'inputs': e}), episodes))
  direct = tf.saved_model.load(os.path.join(export_dir, '1')).signatures['serving_default']
  for episode, (status, body) in zip(episodes, answers):
    assert status == 200
    expected = direct(**{k: tf.constant(v, tf.int64 if k == 'support_labels' else tf.float32)
                         for k, v in episode.items()})['probabilities'].numpy()
    np.testing.assert_allclose(body['outputs']['probabilities'], expected, rtol=1e-6, atol=1e-7)
  assert helpers.http_call(base + '/v1/models/omni:predict', {'inputs': {}})[0] == 400
  assert helpers.http_call(base + '/healthz')[0] == 200
  proc.send_signal(signal.SIGTERM)  # uvicorn finishes what is in flight, then exits by it
  out, err = proc.communicate(timeout=60)
  assert proc.returncode in (0, -signal.SIGTERM), err[-2000:]
  assert out.startswith('serving omni version 1 (serving_default, onehot, spread) at ')
  assert 'POST /v1/models/omni:predict 200' in err and 'Traceback' not in err


def test_serve_help_lists_its_flags_and_exits_0_without_starting_tensorflow():
  proc = subprocess.run([sys.executable, 'serve.py', '--help'], cwd=helpers.REPO,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith('Serve exported SavedModels')
  assert '\nserve flags:\n  --export_dir: ' in proc.stdout and '--max_body_bytes' in proc.stdout
  assert proc.stderr == ''
  imports = subprocess.run([sys.executable, '-X', 'importtime', 'serve.py', '--help'],
                           cwd=helpers.REPO, capture_output=True, text=True, timeout=300).stderr
  imported = {line.rsplit('|', 1)[-1].strip() for line in imports.splitlines()}
  assert 'metadrop_tf.cli.serve_main' in imported  # any depth of nesting
  assert not [name for name in imported if name.split('.')[0] == 'tensorflow']


def test_serve_without_the_serve_extra_is_one_line_without_starting_tensorflow(tmp_path):
  script = ("import atexit, sys; sys.modules['uvicorn'] = None; sys.argv = ['serve.py', "
            f"'--export_dir={tmp_path}']; atexit.register(lambda: print('tensorflow' in "
            "sys.modules)); from metadrop_tf.cli import launch; launch.serve()")
  proc = subprocess.run([sys.executable, '-c', script], cwd=helpers.REPO, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.splitlines() == [
      "error: serving needs uvicorn, of the serve extra: pip install -e '.[serve]'"]
  assert proc.stdout == 'False\n'


@pytest.mark.slow
def test_serve_without_a_savedmodel_is_one_line(tmp_path):
  proc = subprocess.run([sys.executable, 'serve.py', f'--export_dir={tmp_path}'],
                        cwd=helpers.REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.splitlines() == [f'error: --export_dir={tmp_path} holds no SavedModel '
                                      '(saved_model.pb, or numbered version folders holding '
                                      'one); write one with python export.py']
