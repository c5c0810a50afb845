"""serve.py's page in a real browser (headless Chromium through its WebDriver): drawings reach
the model as the shards' images would, and what the page shows is what the model answers.

Needs the system's chromium and chromedriver (Debian: apt-get install chromium
chromium-driver; .ci/run installs them) and the `selenium` test extra."""

import os
import shutil
import signal
import sys
import time

import numpy as np
from PIL import Image
from PIL import ImageDraw
import pytest
import tensorflow as tf

import helpers
from metadrop_tf import learners
from metadrop_tf.export import export_lib
from metadrop_tf.runtime import checkpoints

webdriver = pytest.importorskip('selenium.webdriver')
CHROMEDRIVER = shutil.which('chromedriver')
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('serving_page'), pytest.mark.skipif(
    CHROMEDRIVER is None, reason='no chromedriver: apt-get install chromium chromium-driver')]

sys.path.insert(0, os.path.join(helpers.REPO, 'data'))
import prepare  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

WAY = 3
# Three symbols as polylines in [0, 1]^2 (x right, y down), and a query: symbol 1 redrawn.
SYMBOLS = [[[(0.2, 0.2), (0.8, 0.8)], [(0.8, 0.2), (0.2, 0.8)]],
           [[(0.5, 0.15), (0.5, 0.85)], [(0.25, 0.5), (0.75, 0.5)]],
           [[(0.2, 0.3), (0.5, 0.75), (0.8, 0.3)]]]
QUERY = [[(0.52, 0.2), (0.5, 0.8)], [(0.3, 0.52), (0.72, 0.5)]]
# Two more for a 5-way episode of the trained model: a square and a Z.
MORE = [[[(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75), (0.25, 0.25)]],
        [[(0.2, 0.2), (0.8, 0.2), (0.2, 0.8), (0.8, 0.8)]]]
TRAINED_RUN = 'runs/omniglot_1shot_metadrop'  # committed: Meta Dropout, 10000 iterations


def _omniglot_image(strokes, width=8):
  """strokes drawn as Omniglot's scans are (black pen on white, 105 x 105), then through
  data/prepare.py's own conversion to the shards' 28 x 28 uint8: the reference image."""
  image = Image.new('L', (105, 105), 255)
  draw = ImageDraw.Draw(image)
  for line in strokes:
    draw.line([(105 * x, 105 * y) for x, y in line], fill=0, width=width, joint='curve')
  return prepare.omniglot_to_28(image)


def _export(root, **changes):
  data_dir, savedir = str(root / 'data'), str(root / 'run')
  if changes.get('dataset') != 'sinusoid':
    helpers.write_tiny_shards(data_dir)
  config = helpers.tiny_config(data_dir, **changes)
  ckpt = checkpoints.make_checkpoint(learners.build(config))
  checkpoints.make_manager(ckpt, savedir).save(checkpoint_number=1)
  checkpoints.write_config(savedir, config)
  return export_lib.export_savedmodel(config, savedir, str(root / 'export' / '1'))


@pytest.fixture(scope='module')
def served(tmp_path_factory):
  """A real server on a free port with a tiny Meta Dropout model and a sinusoid one."""
  root = tmp_path_factory.mktemp('page')
  omni = _export(root / 'omni', n_test_mc_samp=2)
  sine = _export(root / 'sine', dataset='sinusoid', way=1, shot=5, query=10, channels=8,
                 backbone='mlp', learner='maml', maml=True)
  trained = str(root / 'trained' / '1')
  run = os.path.join(helpers.REPO, TRAINED_RUN)
  export_lib.export_savedmodel(checkpoints.read_config(run), run, trained)
  proc, base = helpers.start_server(
      f'--export_dir={os.path.dirname(omni)},{os.path.dirname(sine)},'
      f'{os.path.dirname(trained)}', '--model_name=omni,sine,trained')
  yield base, {'omni': omni, 'sine': sine, 'trained': trained}
  proc.send_signal(signal.SIGTERM)
  proc.communicate(timeout=60)


@pytest.fixture(scope='module')
def browser():
  options = webdriver.ChromeOptions()
  for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
              '--window-size=1200,1000'):
    options.add_argument(arg)
  driver = webdriver.Chrome(options=options,
                            service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
  yield driver
  driver.quit()


def _open(browser, base, model):
  browser.get(base + '/')
  _wait(browser, 'return document.body.dataset.ready === "true"')
  browser.execute_script(
      'const s = document.getElementById("model"); s.value = arguments[0];'
      's.dispatchEvent(new Event("change"));', model)


def _wait(browser, script, timeout=120):
  deadline = time.time() + timeout
  while not browser.execute_script(script):
    assert time.time() < deadline, f'timed out waiting for: {script}'
    time.sleep(0.1)


def _draw(browser, canvas_id, strokes):
  """Draws strokes on a pad with the mouse (pointer events, as a person would)."""
  canvas = browser.find_element('id', canvas_id)
  size = canvas.size['width']
  actions = webdriver.ActionChains(browser, duration=10)
  for line in strokes:
    # offsets are from the element's centre
    points = [(round((x - 0.5) * size), round((y - 0.5) * size)) for x, y in line]
    actions.move_to_element_with_offset(canvas, *points[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
      for t in np.linspace(0.1, 1, 10):  # intermediate moves: a stroke, not a jump
        actions.move_to_element_with_offset(canvas, round(x0 + t * (x1 - x0)),
                                            round(y0 + t * (y1 - y0)))
    actions.release()
  actions.perform()


def _input(browser, canvas_id):
  return np.array(browser.execute_script(
      'return metadrop.padToInput(document.getElementById(arguments[0]), [28, 28, 1])',
      canvas_id))[..., 0]


def test_a_drawing_reaches_the_model_as_the_shards_hold_the_same_strokes(served, browser):
  base, _ = served
  _open(browser, base, 'omni')
  for i, strokes in enumerate(SYMBOLS):
    _draw(browser, f'support-{i}-0', strokes)
    drawn = _input(browser, f'support-{i}-0')
    shard = _omniglot_image(strokes) / 255
    # white strokes on black, same place, same orientation, similar width
    assert drawn.max() > 0.9 and np.median(drawn) == 0
    assert np.corrcoef(drawn.ravel(), shard.ravel())[0, 1] > 0.8, i
    assert 0.6 < drawn.sum() / shard.sum() < 1.6, (drawn.sum(), shard.sum())
  # a shard image painted on a pad comes back as itself: the down-sampling is an area mean
  shard = _omniglot_image(QUERY) / 255
  browser.execute_script('metadrop.setPad(document.getElementById("query"), arguments[0])',
                         shard.tolist())
  np.testing.assert_allclose(_input(browser, 'query'), shard, atol=2 / 255)


def test_the_page_shows_what_the_model_answers_with_its_noise_spread(served, browser):
  base, exports = served
  _open(browser, base, 'omni')
  browser.find_element('id', 'predict').click()
  _wait(browser, 'return document.getElementById("status").textContent !== ""')
  assert browser.find_element('id', 'status').text == 'draw class 1, class 2, class 3 first'
  for i, strokes in enumerate(SYMBOLS):
    _draw(browser, f'support-{i}-0', strokes)
  _draw(browser, 'query', QUERY)
  browser.find_element('id', 'predict').click()
  _wait(browser, 'return metadrop.state.last !== null')
  last = browser.execute_script('return metadrop.state.last')
  inputs = last['body']['inputs']
  assert last['body']['signature_name'] == 'spread' and inputs['support_labels'] == [0, 1, 2]
  np.testing.assert_allclose(np.array(inputs['query_x'])[0, ..., 0], _input(browser, 'query'))
  spread = tf.saved_model.load(exports['omni']).signatures['spread']
  direct = spread(support_x=tf.constant(inputs['support_x'], tf.float32),
                  support_labels=tf.constant(inputs['support_labels'], tf.int64),
                  query_x=tf.constant(inputs['query_x'], tf.float32))
  expected = direct['probabilities'].numpy()[0]
  np.testing.assert_allclose(last['probabilities'], expected / expected.sum(), rtol=1e-5)
  shown = [float(row.get_attribute('data-probability'))
           for row in browser.find_elements('css selector', '.bar-row')]
  np.testing.assert_allclose(shown, last['probabilities'], rtol=1e-6)
  assert len(browser.find_elements('css selector', '.whisker')) == WAY
  samples = direct['sample_probabilities'].numpy()[:, 0]
  np.testing.assert_allclose(last['samples'], samples / samples.sum(-1, keepdims=True),
                             rtol=1e-5)
  best = int(np.argmax(expected))
  assert browser.find_element('id', 'status').text.startswith(f'class {best + 1} (')


def test_a_trained_model_knows_a_redrawn_support_symbol(served, browser):
  """The committed Omniglot run, five symbols it never saw drawn once each on the page, and a
  query that redraws one of them, shifted: the page names that class, with the spread of
  Meta Dropout's noise samples shown. METADROP_PAGE_SCREENSHOT=PATH saves the page (docs)."""
  base, _ = served
  _open(browser, base, 'trained')
  assert browser.find_element('id', 'about').text.startswith('omniglot, exported for 20-way')
  symbols = SYMBOLS + MORE
  for i, strokes in enumerate(symbols):
    _draw(browser, f'support-{i}-0', strokes)
  target = 3  # the square, redrawn 0.03 of the pad to the right and down
  _draw(browser, 'query', [[(x + 0.03, y + 0.03) for x, y in line] for line in symbols[target]])
  browser.find_element('id', 'predict').click()
  _wait(browser, 'return metadrop.state.last !== null', timeout=300)
  last = browser.execute_script('return metadrop.state.last')
  assert int(np.argmax(last['probabilities'])) == target, last['probabilities']
  assert browser.find_element('id', 'status').text.startswith(f'class {target + 1} (')
  assert len(browser.find_elements('css selector', '.whisker')) == len(symbols)
  if os.environ.get('METADROP_PAGE_SCREENSHOT'):
    browser.save_screenshot(os.environ['METADROP_PAGE_SCREENSHOT'])


def test_the_sinusoid_page_draws_the_adapted_curve_of_the_clicked_points(served, browser):
  base, exports = served
  _open(browser, base, 'sine')
  plot = browser.find_element('id', 'plot')
  width, height = plot.size['width'], plot.size['height']
  clicks = [(-0.4, -0.2), (-0.2, 0.1), (0.0, 0.3), (0.2, -0.1), (0.4, 0.2)]  # of the size
  actions = webdriver.ActionChains(browser)
  for fx, fy in clicks:
    actions.move_to_element_with_offset(plot, round(fx * width), round(fy * height)).click()
  actions.perform()
  browser.find_element('id', 'fit').click()
  _wait(browser, 'return metadrop.state.last !== null')
  last = browser.execute_script('return metadrop.state.last')
  support_x = np.array(last['body']['inputs']['support_x'])[:, 0]
  support_y = np.array(last['body']['inputs']['support_y'])[:, 0]
  # x in [-5, 5] left to right, y in [-5.5, 5.5] bottom to top
  np.testing.assert_allclose(support_x, [10 * fx for fx, _ in clicks], atol=0.1)
  np.testing.assert_allclose(support_y, [-11 * fy for _, fy in clicks], atol=0.1)
  regress = tf.saved_model.load(exports['sine']).signatures['serving_default']
  expected = regress(**{k: tf.constant(v, tf.float32)
                        for k, v in last['body']['inputs'].items()})['predictions'].numpy()
  assert len(last['curve']['x']) == 201
  np.testing.assert_allclose(last['curve']['y'], expected[:, 0], rtol=1e-5, atol=1e-6)
  assert browser.find_element('id', 'fit-status').text == 'adapted to 5 points'
