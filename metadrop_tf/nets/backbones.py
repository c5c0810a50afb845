"""Backbones: one module per network in this package, each registered by name (--backbone).

  build(config, dtype) -> the Network a Config describes (nets.network.REGISTRY)
  check(config)        ConfigError for a --backbone no module registered, or settings the
                       chosen network refuses (its check_config)
  meta_test_bytes_per_episode(config)   the backbone's estimate of one meta-test episode
@network.register('name', options) on a network.Network subclass with a classmethod
from_config(config, dtype), in a module of this package (imported here) or of the user's
(--import_modules), adds a backbone; see docs/adding.md.
"""

import importlib
import os
import pkgutil

from metadrop_tf import components
from metadrop_tf import config as config_lib
from metadrop_tf.nets import network


def _network_class(config) -> type:
  """The registered class of config.backbone; ConfigError naming the registered ones."""
  components.require('backbone', config.backbone)
  return network.REGISTRY[config.backbone]


def check(config: config_lib.Config) -> None:
  """ConfigError unless config.backbone is registered, takes the dataset's kind of inputs, and
  its class's check_config accepts the config (a noise type or mixup it does not implement)."""
  cls = _network_class(config)
  if cls.inputs != config.info.inputs:
    raise config_lib.ConfigError(
        f'`backbone={config.backbone}` does not fit `dataset={config.dataset}` (its inputs are '
        f'{config.info.inputs}, not {cls.inputs}); use `backbone={config.info.backbone}`')
  cls.check_config(config)


def build(config: config_lib.Config, dtype: str = 'float32') -> network.Network:
  """The network of config.backbone (checked by learners.check), input normalization and
  running batch-norm statistics set up as the Config asks; variables of `dtype`."""
  model = _network_class(config).from_config(config, dtype)
  if config.normalize:  # the statistics come from the data (train) or the checkpoint
    model.normalize_inputs(config.image_shape[-1])
  if config.bn_mode == 'running':
    model.track_running_statistics()
  return model


def meta_test_bytes_per_episode(config: config_lib.Config) -> int:
  """Estimated peak activation bytes of one meta-test episode of the config's network."""
  return _network_class(config).meta_test_bytes_per_episode(config)


def _import_networks() -> None:
  """Imports every module of this package, so each backbone registers itself: adding one is
  writing its module."""
  for info in pkgutil.iter_modules([os.path.dirname(__file__)]):
    importlib.import_module(f'{__package__}.{info.name}')


_import_networks()
