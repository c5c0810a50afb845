"""Networks come from the backbone registry (metadrop_tf/nets/backbones.py): each module of
nets/ registers its network, a Config builds it, and a backbone written in a module of the
user's registers itself with an option of its own, and a learner meta-trains on it, with no
list elsewhere edited (docs/adding.md)."""

import sys

import numpy as np
import pytest
import tensorflow as tf

import helpers
from metadrop_tf import components
from metadrop_tf import config as config_lib
from metadrop_tf import learners
from metadrop_tf.nets import backbones
from metadrop_tf.nets import mlp
from metadrop_tf.nets import model
from metadrop_tf.nets import network
from metadrop_tf.nets import resnet

TOY = '''"""A toy backbone: conv-4 whose blocks have --toy_width channels."""

from metadrop_tf import config as config_lib
from metadrop_tf.nets import model
from metadrop_tf.nets import network


@network.register('toy_conv', {'toy_width': config_lib.Option(3, 'Channels of every block.')})
class ToyConv(model.MetaDropoutNet):

  @classmethod
  def from_config(cls, config, dtype='float32'):
    return cls(cls.head_way(config), config.image_shape, config.toy_width, noisy=config.noisy,
               dtype=dtype, seed=config.seed)
'''


def _sinusoid():
  return config_lib.Config(dataset='sinusoid', way=1, backbone='mlp', channels=5).validate()


@pytest.mark.parametrize('config, cls, width', [
    (helpers.tiny_config(), model.MetaDropoutNet, ('conv0_kernel', 4)),
    (helpers.tiny_config(backbone='resnet12', channels=0, resnet_widths='2,3,2,4'),
     resnet.ResNet12, ('stage0_conva_kernel', 2)),
    (_sinusoid(), mlp.MLP, ('dense0_kernel', 5)),
], ids=['conv4', 'resnet12', 'mlp'])
def test_each_registered_backbone_is_built_from_a_config(config, cls, width):
  built = backbones.build(config)
  assert type(built) is cls and network.REGISTRY[config.backbone] is cls  # pylint: disable=unidiomatic-typecheck
  assert cls.backbone == config.backbone
  name, channels = width
  assert built.theta[name].shape[-1] == channels


def test_the_memory_estimate_is_the_backbones():
  conv4 = config_lib.Config(dataset='mimgnet', way=5, channels=64, shot=5).validate()
  resnet12 = config_lib.Config(dataset='mimgnet', way=5, backbone='resnet12', shot=5,
                               resnet_widths='64,128,256,512').validate()
  # ResNet-12 keeps three full-resolution maps of its first stage's width where conv-4 has one.
  assert (backbones.meta_test_bytes_per_episode(resnet12)
          == 3 * backbones.meta_test_bytes_per_episode(conv4))
  assert backbones.meta_test_bytes_per_episode(conv4.replace(test_mc_chunks=3)) == (
      backbones.meta_test_bytes_per_episode(conv4) // 3)
  assert 0 < backbones.meta_test_bytes_per_episode(_sinusoid()) < 2 ** 20


def test_an_unknown_backbone_is_one_line_naming_the_registered_ones():
  with pytest.raises(config_lib.ConfigError) as error:
    learners.check(config_lib.Config(backbone='conv5'))
  assert str(error.value) == ("`backbone=conv5` is unknown; choose one of "
                              "['conv4', 'mlp', 'resnet12']")
  assert helpers.as_printed(error.value).startswith('--backbone=conv5 is unknown')


@pytest.mark.parametrize('settings, message', [
    (dict(dataset='sinusoid', way=1), '`backbone=conv4` does not fit `dataset=sinusoid` (its '
     'inputs are numbers, not images); use `backbone=mlp`'),
    (dict(backbone='mlp'), '`backbone=mlp` does not fit `dataset=omniglot` (its inputs are '
     'images, not numbers); use `backbone=conv4`'),
])
def test_a_backbone_that_does_not_take_the_datasets_inputs_is_one_line(settings, message):
  with pytest.raises(config_lib.ConfigError) as error:
    learners.check(config_lib.Config(**settings))
  assert str(error.value) == message


def test_registering_another_network_under_a_taken_name_fails():
  with pytest.raises(ValueError, match="backbone 'conv4' is registered twice"):
    network.register('conv4')(type('Other', (model.MetaDropoutNet,), {}))


@pytest.fixture
def toy_backbone(tmp_path, monkeypatch):
  """The TOY module imported as --import_modules does; its registrations undone after."""
  (tmp_path / 'toy_backbone.py').write_text(TOY)
  monkeypatch.chdir(tmp_path)
  components.import_modules('toy_backbone')
  yield sys.modules['toy_backbone'].ToyConv
  del network.REGISTRY['toy_conv'], components.REGISTRY[('backbone', 'toy_conv')]
  del config_lib.OPTIONS['toy_width'], sys.modules['toy_backbone']


def test_a_backbone_from_its_own_module_registers_and_meta_trains(toy_backbone):
  config = helpers.tiny_config(backbone='toy_conv', channels=0, learner='metadrop')
  config = config.replace(toy_width=5)
  learners.check(config)
  assert components.recorded(config).to_dict()['toy_width'] == 5  # a key of config.json
  learner = learners.build(config)
  assert type(learner.network) is toy_backbone  # pylint: disable=unidiomatic-typecheck
  assert learner.network.theta['conv3_kernel'].shape[-1] == 5
  episode = helpers.random_episode(way=3, image_shape=(28, 28, 1), dtype=np.float32)
  variables = learner.network.trainable_variables
  with tf.GradientTape() as tape:
    loss = learner.meta_objective(episode, tf.constant([1, 2]))['loss']
  gradients = tape.gradient(loss, variables)
  assert np.isfinite(float(loss))
  assert all(g is not None and np.isfinite(g.numpy()).all() for g in gradients)
  assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in gradients)


def test_a_backbones_option_is_refused_with_another_backbone_and_the_reverse(toy_backbone):
  del toy_backbone
  with pytest.raises(config_lib.ConfigError, match=r'^`toy_width=5` does not apply to '
                     r'`backbone=conv4`: it is an option of `backbone=toy_conv`'):
    learners.check(helpers.tiny_config().replace(toy_width=5))
  with pytest.raises(config_lib.ConfigError, match=r'^`channels=4` does not apply to '
                     r'`backbone=toy_conv`'):
    learners.check(helpers.tiny_config(backbone='toy_conv'))


RESNET = dict(backbone='resnet12', channels=0, resnet_widths='2,3,2,4')


@pytest.mark.parametrize('settings, message', [
    (dict(RESNET, learner='metadrop', noise_type='learned_add'),
     "`noise_type=learned_add` is built for conv4 and mlp; ResNet-12 has Meta Dropout's noise "
     'only'),
    (dict(RESNET, learner='maml', inner_mixup='input'),
     '`inner_mixup` is built for conv4 and mlp, not `backbone=resnet12`'),
    (dict(dataset='sinusoid', way=1, backbone='mlp', channels=0, learner='metadrop',
          noise_type='vib'), '`noise_type=vib` is built for `backbone=conv4`'),
])
def test_a_backbone_refuses_what_it_does_not_implement_in_one_line(settings, message):
  with pytest.raises(config_lib.ConfigError) as error:
    learners.check(helpers.tiny_config(**settings))
  assert str(error.value) == message


@pytest.mark.parametrize('settings', [
    dict(learner='metadrop', noise_type='vib'),
    dict(learner='maml', inner_mixup='manifold'),
    dict(RESNET, learner='metadrop'),
    dict(dataset='sinusoid', way=1, backbone='mlp', channels=0, learner='metadrop',
         noise_type='learned_add'),
])
def test_what_a_backbone_implements_is_accepted(settings):
  learners.check(helpers.tiny_config(**settings))
