"""Export: a SavedModel that adapts on a support set and predicts the query (the data of the
figures: visualization.py)."""

import os
import shutil

import tensorflow as tf

from metadrop_tf import config as config_lib
from metadrop_tf import files
from metadrop_tf import learners
from metadrop_tf import seeds as seeds_lib
from metadrop_tf.learners import base as learner_base
from metadrop_tf.runtime import checkpoints

SPREAD_SAMPLES = 10  # noise samples of the `spread` signature (noisy learners)
DESCRIPTION_FILE = os.path.join('assets.extra', 'metadrop_tf.json')  # TF Serving ignores it


class _Served(tf.Module):
  """A learner's variables and evaluation settings, tracked for a SavedModel."""

  def __init__(self, learner, config):
    super().__init__()
    self.learner = learner
    self.network = learner.network
    if learner.own is not None:
      self.learner_variables = learner.own
    # Track the plain tf.Variables under the Keras ones: with only Keras 3 variables tracked,
    # TF1-style loaders (saved_model_cli run, TF Serving) fail with "Could not find variable".
    self.tf_variables = [v.value for v in learner.variables()]
    self.way = config.way
    self.mc_samples = config.test_mc_samples
    self.seed = tf.constant([config.seed, seeds_lib.SERVE], tf.int32)
    self.image_shape = tuple(config.image_shape)

  def signatures(self) -> dict:
    raise NotImplementedError


class AdaptAndRegress(_Served):
  """Regression (sinusoid): adapts on support points, predicts the query points.

  `serving_default`: support_x [n, D_in], support_y [n, D_out], query_x [m, D_in] (float32)
  -> {'predictions': [m, D_out]}. Inputs are checked in the graph: an InvalidArgumentError
  names the input (shape, empty set, NaN or inf, support inputs and targets in number).
  """

  def __init__(self, learner, config):
    super().__init__(learner, config)
    points = lambda name: tf.TensorSpec([None, None], tf.float32, name=name)
    self.serve = tf.function(self._serve, autograph=False, input_signature=[
        points('support_x'), points('support_y'), points('query_x')])

  def signatures(self) -> dict:
    return {'serving_default': self.serve}

  def _checks(self, values, name, width):
    return [
        tf.debugging.assert_equal(tf.shape(values)[1], width,
                                  message=f'{name} must be float32 [n, {width}]'),
        tf.debugging.assert_positive(tf.shape(values)[0], message=f'{name} is empty'),
        tf.debugging.assert_all_finite(values, message=f'{name} holds NaN or inf')]

  def _serve(self, support_x, support_y, query_x):
    (width,) = self.image_shape
    checks = (self._checks(support_x, 'support_x', width)
              + self._checks(support_y, 'support_y', self.way)
              + self._checks(query_x, 'query_x', width))
    checks.append(tf.debugging.assert_equal(
        tf.shape(support_x)[0], tf.shape(support_y)[0],
        message='support inputs and targets differ in number'))
    with tf.control_dependencies(checks):
      support_x = tf.ensure_shape(tf.identity(support_x), [None, width])
      support_y = tf.ensure_shape(tf.identity(support_y), [None, self.way])
      query_x = tf.ensure_shape(tf.identity(query_x), [None, width])
      state = self.learner.adapt(support_x, support_y, self.seed, self.mc_samples)[-1]
      predictions = self.learner.predict(state, query_x)
    return {'predictions': tf.cast(predictions, tf.float32)}


class AdaptAndPredict(_Served):
  """Runs the meta-test inner loop on a support set, then predicts the query set.

  Same steps, inner learning rate and MC samples as evaluation (MAML: one deterministic pass).
  Signatures: `serving_default` takes integer support labels, `onehot` one-hot ones. Every
  input is checked in the graph, so a client gets an InvalidArgumentError naming the input and
  what was expected: image shape [n, H, W, C], a non-empty support and query set, finite
  pixels in [0, 1], labels in [0, way), rows of `support_y` that are one-hot.
  """

  def __init__(self, learner, config):
    super().__init__(learner, config)
    # Image shapes are checked in the graph (a mismatch in the signature itself fails deep in
    # the runtime with a message no client can act on), so the specs accept any [n, h, w, c].
    images = lambda name: tf.TensorSpec([None, None, None, None], tf.float32, name=name)
    self.serve_labels = tf.function(self._serve_labels, autograph=False, input_signature=[
        images('support_x'), tf.TensorSpec([None], tf.int64, name='support_labels'),
        images('query_x')])
    self.serve_onehot = tf.function(self._serve_onehot, autograph=False, input_signature=[
        images('support_x'), tf.TensorSpec([None, None], tf.float32, name='support_y'),
        images('query_x')])
    # One traced adaptation shared by every signature (traced once per signature, a Meta
    # Dropout ResNet-12 took 1.7 times as long to export).
    self._adapt_predict = tf.function(self._adapt_predict, autograph=False, input_signature=[
        images('support_x'), tf.TensorSpec([None, None], tf.float32, name='support_y'),
        images('query_x')])
    self.noisy = bool(getattr(learner, 'noisy', False))
    if self.noisy:
      self.serve_spread = tf.function(self._serve_spread, autograph=False,
                                      input_signature=[
          images('support_x'), tf.TensorSpec([None], tf.int64, name='support_labels'),
          images('query_x')])

  def signatures(self) -> dict:
    served = {'serving_default': self.serve_labels, 'onehot': self.serve_onehot}
    if self.noisy:
      served['spread'] = self.serve_spread
    return served

  def _serve_spread(self, support_x, support_labels, query_x):
    """serving_default's outputs, plus 'sample_probabilities' [SPREAD_SAMPLES, n_query, way]:
    the query probabilities after adapting under each of SPREAD_SAMPLES single noise samples,
    how much the prediction depends on the noise drawn (Meta Dropout's uncertainty)."""
    outputs = self._serve_labels(support_x, support_labels, query_x)
    support_y = tf.one_hot(support_labels, self.way)
    support_x = tf.ensure_shape(support_x, [None, *self.image_shape])
    query_x = tf.ensure_shape(query_x, [None, *self.image_shape])
    support_y = tf.ensure_shape(support_y, [None, self.way])

    def sample(index):  # adaptation under one noise sample (a loop, not SPREAD_SAMPLES graphs)
      seed = seeds_lib.fold_seed(self.seed, index + 1)
      state = self.learner.adapt(support_x, support_y, seed, 1)[-1]
      return tf.cast(tf.nn.softmax(self.learner.predict(state, query_x)), tf.float32)
    samples = tf.map_fn(sample, tf.range(SPREAD_SAMPLES), fn_output_signature=tf.float32)
    return {**outputs, 'sample_probabilities': samples}

  def _serve_labels(self, support_x, support_labels, query_x):
    checks = [
        tf.debugging.assert_non_negative(
            support_labels, message='support_labels must be in [0, way)'),
        tf.debugging.assert_less(
            support_labels, tf.constant(self.way, tf.int64),
            message=f'support_labels must be in [0, way) with way = {self.way}')]
    with tf.control_dependencies(checks):
      support_y = tf.one_hot(support_labels, self.way)
    return self._adapt_predict(support_x, support_y, query_x)

  def _serve_onehot(self, support_x, support_y, query_x):
    checks = [
        tf.debugging.assert_equal(
            tf.shape(support_y)[1], self.way,
            message=f'support_y must have way = {self.way} columns'),
        tf.debugging.assert_equal(
            tf.reduce_all((support_y == 0) | (support_y == 1)) &
            tf.reduce_all(tf.reduce_sum(support_y, axis=1) == 1), True,
            message='support_y must be one-hot: one 1 per row, 0 elsewhere')]
    with tf.control_dependencies(checks):
      support_y = tf.identity(support_y)
    return self._adapt_predict(support_x, support_y, query_x)

  def _image_checks(self, images, name):
    """Asserts of images [n, H, W, C]: the model's H, W, C, n > 0, finite, in [0, 1]."""
    h, w, c = self.image_shape
    return [
        tf.debugging.assert_equal(
            tf.reduce_all(tf.shape(images)[1:] == tf.constant([h, w, c])), True,
            message=f'{name} must be float32 [n, {h}, {w}, {c}] images'),
        tf.debugging.assert_positive(tf.shape(images)[0],
                                     message=f'{name} is empty: the {name[:-2]} set needs images'),
        tf.debugging.assert_all_finite(images, message=f'{name} holds NaN or inf pixels'),
        tf.debugging.assert_equal(
            tf.reduce_all((images >= 0) & (images <= 1)), True,
            message=f'{name} pixels must be in [0, 1] (divide 0..255 images by 255)')]

  def _adapt_predict(self, support_x, support_y, query_x):
    """{'probabilities': [n_query, way], 'labels': [n_query] int64} after adaptation."""
    checks = self._image_checks(support_x, 'support_x') + self._image_checks(query_x, 'query_x')
    checks.append(tf.debugging.assert_equal(
        tf.shape(support_x)[0], tf.shape(support_y)[0],
        message='support images and labels differ in number'))
    with tf.control_dependencies(checks):
      support_x = tf.ensure_shape(tf.identity(support_x), [None, *self.image_shape])
      query_x = tf.ensure_shape(tf.identity(query_x), [None, *self.image_shape])
      support_y = tf.ensure_shape(tf.identity(support_y), [None, self.way])
      state = self.learner.adapt(support_x, support_y, self.seed, self.mc_samples)[-1]
      probabilities = tf.nn.softmax(self.learner.predict(state, query_x))
    return {'probabilities': tf.cast(probabilities, tf.float32),
            'labels': tf.argmax(probabilities, axis=-1)}


def restore_learner(config: config_lib.Config, savedir: str,
                    checkpoint: str | None = None) -> tuple[learner_base.Learner, int]:
  """The run's learner with its checkpoint restored; returns (learner, checkpoint step)."""
  learner = learners.build(config)
  ckpt = checkpoints.make_checkpoint(learner)
  checkpoints.restore(ckpt, savedir, checkpoint)
  return learner, int(ckpt.step.numpy())


def describe(config: config_lib.Config, module: _Served) -> dict:
  """What a client needs beyond the signatures (read by serve.py's page): the task, the
  classes (way) and input shape the model was exported for, its signatures."""
  return {'task': 'regression' if isinstance(module, AdaptAndRegress) else 'classification',
          'dataset': config.dataset, 'way': config.way, 'shot': config.shot,
          'input_shape': list(config.image_shape), 'mc_samples': config.test_mc_samples,
          'signatures': sorted(module.signatures())}


def export_savedmodel(config: config_lib.Config, savedir: str, export_dir: str,
                      checkpoint: str | None = None, overwrite: bool = False) -> str:
  """Writes the SavedModel of a trained run to export_dir; returns export_dir.

  A non-empty export_dir is refused unless `overwrite`. The model is written to a temporary
  folder beside export_dir and renamed into place, so an interrupted export leaves no half
  model there (and an earlier export stays whole until the new one is complete).
  """
  if os.path.isdir(export_dir) and os.listdir(export_dir) and not overwrite:
    raise config_lib.ConfigError(
        f'`export_dir={export_dir}` is not empty; pass `overwrite=True` to replace what is there, '
        'or choose another folder')
  learner, _ = restore_learner(config, savedir, checkpoint)
  served = AdaptAndRegress if learner.objective.name == 'regression' else AdaptAndPredict
  module = served(learner, config)
  export_dir = os.path.normpath(export_dir)
  partial, old = export_dir + '.partial', export_dir + '.replaced'
  for leftover in (partial, old):
    shutil.rmtree(leftover, ignore_errors=True)
  tf.saved_model.save(module, partial, signatures=module.signatures())
  os.makedirs(os.path.join(partial, os.path.dirname(DESCRIPTION_FILE)), exist_ok=True)
  files.write_json(os.path.join(partial, DESCRIPTION_FILE), describe(config, module))
  if os.path.exists(export_dir):
    os.replace(export_dir, old)
  os.replace(partial, export_dir)
  shutil.rmtree(old, ignore_errors=True)
  return export_dir
