"""Export: a SavedModel that adapts on a support set and predicts the query, and the
reference's visualization dump (features and 2-way decision boundary at every inner step)."""

import os

import numpy as np
import tensorflow as tf

from metadrop_tf import checkpoints
from metadrop_tf import data
from metadrop_tf import meta_learner
from metadrop_tf import model as model_lib

SERVE_STREAM = 2  # noise seed of serving: [seed, 2], fixed so predictions are repeatable
VIS_EPISODES = 10
VIS_SAMPLES = 10


class AdaptAndPredict(tf.Module):
  """Runs the meta-test inner loop on a support set, then predicts the query set.

  Same steps, inner learning rate and MC samples as evaluation (MAML: one deterministic pass).
  Signatures: `serving_default` takes integer support labels, `onehot` one-hot ones.
  """

  def __init__(self, model, config):
    super().__init__()
    self.model = model
    # Track the plain tf.Variables under the Keras ones: with only Keras 3 variables tracked,
    # TF1-style loaders (saved_model_cli run, TF Serving) fail with "Could not find variable".
    self.tf_variables = [v.value for v in model.variables]
    self.way = config.way
    self.adaptation = meta_learner.Adaptation.from_config(config, config.test_mc_samples)
    self.seed = tf.constant([config.seed, SERVE_STREAM], tf.int32)
    self.serve_labels = tf.function(self._serve_labels, input_signature=[
        tf.TensorSpec([None, *config.image_shape], tf.float32, name='support_x'),
        tf.TensorSpec([None], tf.int64, name='support_labels'),
        tf.TensorSpec([None, *config.image_shape], tf.float32, name='query_x')])
    self.serve_onehot = tf.function(self._adapt_predict, input_signature=[
        tf.TensorSpec([None, *config.image_shape], tf.float32, name='support_x'),
        tf.TensorSpec([None, config.way], tf.float32, name='support_y'),
        tf.TensorSpec([None, *config.image_shape], tf.float32, name='query_x')])

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

  def _adapt_predict(self, support_x, support_y, query_x):
    """{'probabilities': [n_query, way], 'labels': [n_query] int64} after adaptation."""
    checks = [
        tf.debugging.assert_positive(tf.shape(support_x)[0], message='the support set is empty'),
        tf.debugging.assert_equal(tf.shape(support_x)[0], tf.shape(support_y)[0],
                                  message='support images and labels differ in number')]
    with tf.control_dependencies(checks):
      theta = meta_learner.inner_loop(self.model, support_x, support_y, self.seed,
                                      self.adaptation)[-1]
    probabilities = tf.nn.softmax(self.model(query_x, theta=theta))
    return {'probabilities': tf.cast(probabilities, tf.float32),
            'labels': tf.argmax(probabilities, axis=-1)}


def restore_model(config, workdir, checkpoint=None):
  """The run's model with its checkpoint restored; returns (model, checkpoint step)."""
  model = model_lib.build_model(config)
  ckpt = checkpoints.make_checkpoint(model)
  checkpoints.restore(ckpt, workdir, checkpoint)
  return model, int(ckpt.step.numpy())


def export_savedmodel(config, workdir, export_dir, checkpoint=None):
  """Writes the SavedModel of a trained run to export_dir; returns export_dir."""
  model, _ = restore_model(config, workdir, checkpoint)
  module = AdaptAndPredict(model, config)
  tf.saved_model.save(module, export_dir, signatures={
      'serving_default': module.serve_labels, 'onehot': module.serve_onehot})
  return export_dir


def visualization_dump(model, config, test_images):
  """Per-inner-step features and 2-column heads of the reference's 10 visualization episodes.

  Episode c (c = 0..9) is 2-way on test classes (c, c + 5): the first K instances are the
  support, the next Q the query; the dense head keeps its first 2 columns. Returns arrays
  with E = 10 episodes and S + 1 steps: support_features [E, S+1, 2K, F], query_features
  [E, S+1, 2Q, F], perturbed_features [E, S+1, 10, 2K, F] (empty for MAML),
  dense_kernel [E, S+1, F, 2], dense_bias [E, S+1, 2].
  """
  k, q = config.shot, config.query
  if len(test_images) < VIS_EPISODES + 5:
    raise data.DataError(f'the visualization needs {VIS_EPISODES + 5} test classes; the test '
                         f'split has {len(test_images)}')
  adaptation = meta_learner.Adaptation.from_config(config, config.test_mc_samples)
  labels = lambda per_class: tf.one_hot(np.repeat([0, 1], per_class), 2)
  out = {key: [] for key in ('support_features', 'query_features', 'perturbed_features',
                             'dense_kernel', 'dense_bias')}
  n_perturbed = 0 if config.maml else VIS_SAMPLES
  for c in range(VIS_EPISODES):
    pair = data.to_float(test_images[[c, c + 5]])  # [2, instances, H, W, C]
    support = tf.reshape(pair[:, :k], [2 * k, *config.image_shape])
    query = tf.reshape(pair[:, k:k + q], [2 * q, *config.image_shape])
    theta0 = model.initial_theta()
    theta0['dense_kernel'] = theta0['dense_kernel'][:, :2]
    theta0['dense_bias'] = theta0['dense_bias'][:2]
    seed = tf.constant([config.seed, 100 + c], tf.int32)
    thetas = meta_learner.inner_loop(model, support, labels(k), seed, adaptation, theta0)
    rows = {key: [] for key in out}
    for step, theta in enumerate(thetas):
      rows['support_features'].append(model.features(support, theta))
      rows['query_features'].append(model.features(query, theta))
      rows['perturbed_features'].append(tf.stack([
          model.features(support, theta, sample=True,
                         seed=meta_learner.fold_seed(seed, 1000 + step, s))
          for s in range(n_perturbed)]) if n_perturbed else
          tf.zeros([0, 2 * k, model.feature_dim], model.dtype))
      rows['dense_kernel'].append(theta['dense_kernel'])
      rows['dense_bias'].append(theta['dense_bias'])
    for key, values in rows.items():
      out[key].append(np.stack([v.numpy() for v in values]))
  dump = {key: np.stack(values) for key, values in out.items()}
  dump['support_labels'] = np.repeat([0, 1], k)
  dump['query_labels'] = np.repeat([0, 1], q)
  return dump


def export_visualization(config, workdir, out_path, checkpoint=None):
  """Writes the visualization dump of a trained run as a .npz; returns its path."""
  model, step = restore_model(config, workdir, checkpoint)
  test_images = data.load_splits(config, ('test',))['test']
  dump = visualization_dump(model, config, test_images)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  np.savez_compressed(out_path, checkpoint_step=step, maml=config.maml, **dump)
  return out_path


def noise_maps(model, images, n_samples=4, seed=0):
  """Block outputs of the first of `images` (uint8 [n, H, W, C], a batch so batch norm has
  statistics): deterministic, then n_samples noise samples.

  Returns a list (1 + n_samples) of lists (4 blocks) of [H_l, W_l, C] arrays.
  """
  x = data.to_float(images)
  columns = [model.block_outputs(x)]
  columns += [model.block_outputs(x, sample=True, seed=tf.constant([seed, s], tf.int32))
              for s in range(n_samples)]
  return [[block[0].numpy() for block in column] for column in columns]
