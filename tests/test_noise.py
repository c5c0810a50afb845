"""The noise-type registry (metadrop_tf/nets/noise.py): a noise type written in a module of the
user's registers itself with an option of its own, a noisy learner meta-learns its generator,
and nothing else is edited (docs/adding.md). The noise functions themselves: test_layers.py."""

import sys

import numpy as np
import pytest
import tensorflow as tf

import helpers
from metadrop_tf import components
from metadrop_tf import config as config_lib
from metadrop_tf import learners
from metadrop_tf.nets import noise as noise_lib

TOY = '''"""A toy noise type: mu * sigmoid(alpha + toy_temperature * eps), learned by alpha."""
import tensorflow as tf

from metadrop_tf import config as config_lib
from metadrop_tf.nets import noise


def make(settings):
  """The noise function, given the values of the settings it reads (its own option here)."""
  temperature = settings['toy_temperature']

  def gate(mu, alpha, sample, seed=None, sampler=noise.box_muller_normal, noise_shape=None):
    z = alpha
    if sample:
      shape = tf.shape(alpha) if noise_shape is None else noise_shape
      z = alpha + temperature * sampler(shape, seed, alpha.dtype)
    return mu * tf.sigmoid(z)
  return gate


noise.register('toy_gate', make,
               {'toy_temperature': config_lib.Option(1.0, 'Std of the gate noise.')})
'''


@pytest.fixture
def toy_noise(tmp_path, monkeypatch):
  """The TOY module imported as --import_modules does; its registrations undone after."""
  (tmp_path / 'toy_noise.py').write_text(TOY)
  monkeypatch.chdir(tmp_path)
  components.import_modules('toy_noise')
  yield sys.modules['toy_noise']
  del noise_lib.REGISTRY['toy_gate'], components.REGISTRY[('noise type', 'toy_gate')]
  del config_lib.OPTIONS['toy_temperature'], sys.modules['toy_noise']


def test_every_noise_type_is_a_component_with_its_options():
  for name in noise_lib.REGISTRY:
    assert ('noise type', name) in components.REGISTRY
  assert components.REGISTRY[('noise type', 'fixed_add')].options == {'noise_scale'}
  assert components.REGISTRY[('noise type', 'vib')].options == {'noise_penalty'}
  learned = {n for n, kind in noise_lib.REGISTRY.items() if kind.learned}
  assert learned == {'metadrop', 'learned_add', 'info_dropout', 'vib'}


def test_an_unknown_noise_type_is_one_line_naming_the_registered_ones():
  with pytest.raises(config_lib.ConfigError) as error:
    learners.check(helpers.tiny_config(learner='metadrop', noise_type='dropout'))
  assert str(error.value) == ('`noise_type=dropout` is unknown; choose one of '
                              f'{sorted(noise_lib.REGISTRY)}')
  assert helpers.as_printed(error.value).startswith('--noise_type=dropout is unknown')


def test_a_noise_type_from_its_own_module_draws_and_meta_learns_its_generator(toy_noise):
  del toy_noise
  config = helpers.tiny_config(learner='metadrop', noise_type='toy_gate')
  config = config.replace(toy_temperature=0.5)
  learners.check(config)
  assert components.recorded(config).to_dict()['toy_temperature'] == 0.5  # in config.json
  learner = learners.build(config)
  assert learner.network.learned_noise  # phi is meta-learned
  mu, alpha, seed = tf.ones([2, 3]), tf.zeros([2, 3]), tf.constant([3, 4])
  calm = noise_lib.make_noise('toy_gate', options={'toy_temperature': 0.0})
  np.testing.assert_allclose(calm(mu, alpha, True, seed), calm(mu, alpha, False))  # its option
  drawn = learner.network.noise(mu, alpha, True, seed)
  assert float(tf.reduce_max(tf.abs(drawn - calm(mu, alpha, False)))) > 1e-3  # reached it
  episode = helpers.random_episode(way=3, image_shape=(28, 28, 1), dtype=np.float32)
  blocks = [v for name, v in learner.network.phi.items() if name.startswith('conv')]
  with tf.GradientTape() as tape:
    loss = learner.meta_objective(episode, tf.constant([1, 2]))['loss']
  gradients = tape.gradient(loss, blocks)  # the noise generator of every block
  assert np.isfinite(float(loss)) and len(gradients) == 8
  assert all(g is not None and np.isfinite(g.numpy()).all() for g in gradients)
  assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in gradients)


def test_a_noise_types_option_is_refused_with_another_noise_type(toy_noise):
  del toy_noise
  with pytest.raises(config_lib.ConfigError, match=r'^`toy_temperature=0.5` does not apply to '
                     r'`noise_type=metadrop`: it is an option of `noise_type=toy_gate`'):
    learners.check(helpers.tiny_config(learner='metadrop').replace(toy_temperature=0.5))
