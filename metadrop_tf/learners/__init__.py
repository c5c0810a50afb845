"""Learners: one module per method, registered by name (`--learner=NAME`).

  learners.build(config) -> the Learner a Config describes, around its network.
  @learners.register('name') on a Learner subclass with `from_config(network, config)`, in a
  module of this package (imported automatically), adds a method; see base.py for the
  interface and docs/adding.md.
"""

import importlib
import pkgutil
from typing import Callable

from metadrop_tf import components
from metadrop_tf import config as config_lib
from metadrop_tf.learners import base
from metadrop_tf.nets import backbones
from metadrop_tf.nets import network as network_lib

config_lib.document(
    learner='Meta-learner: maml, fomaml, metadrop, metasgd (learned per-element inner rates), '
            'anil (adapts the head only), csn (conditionally shifted neurons) or metalstm (the '
            'Meta-learner LSTM, --n_steps updates); empty: metadrop, or maml with --maml.',
    maml='Plain MAML: no noise, phi unused (the reference flag; the same as --learner=maml).',
    meta_dropout="Add Meta Dropout's learned noise to the learner's inner loop (e.g. "
                 '--learner=metasgd --meta_dropout).',
    adapt_params='Parameters the inner loop adapts, the others stay meta-learned: empty for '
                 "all, 'head', or comma-separated names or prefixes (e.g. conv3,dense).",
    zero_head='Start the head of every task at zero and meta-learn only the encoder (a run can '
              'then be evaluated with another --way).')

REGISTRY = {}


def register(name: str) -> Callable:
  """Class decorator: makes the learner available as --learner=name."""
  def decorate(cls):
    if name in REGISTRY:
      raise ValueError(f'learner {name!r} is registered twice')
    REGISTRY[name] = cls
    cls.name = name
    options = {}  # its OPTIONS and its bases': names, or name -> config.Option (new ones)
    for klass in reversed(cls.__mro__):
      own = klass.__dict__.get('OPTIONS', ())
      options.update(own if isinstance(own, dict) else dict.fromkeys(own))
    components.declare('learner', name, options)
    return cls
  return decorate


def check(config: config_lib.Config) -> None:
  """ConfigError unless config.noise_type, bn_mode, inner_mixup (if set), backbone and
  learner_name are registered, every option the config sets belongs to a component it uses
  (metadrop_tf.components), and the learner's optional classmethod check_config accepts it;
  before any data is loaded."""
  components.require('noise type', config.noise_type)
  components.require('batch norm', config.bn_mode)
  if config.inner_mixup:
    components.require('mixup', config.inner_mixup)
  backbones.check(config)
  components.require('learner', config.learner_name)
  components.check(config)
  check_config = getattr(REGISTRY[config.learner_name], 'check_config', None)
  if check_config is not None:
    check_config(config)


def build(config: config_lib.Config, dtype: str = 'float32',
          network: network_lib.Network | None = None) -> base.Learner:
  """The learner of config.learner_name around `network` (default: the config's network);
  ConfigError for an unknown learner or a bad adapt_params."""
  check(config)
  network = network or backbones.build(config, dtype)
  try:
    return REGISTRY[config.learner_name].from_config(network, config)
  except ValueError as e:  # a bad adapt_params
    raise config_lib.ConfigError(str(e)) from None


def _import_methods():
  """Imports every module of this package, so each method registers itself: adding a learner
  is writing its module."""
  for info in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{info.name}')


_import_methods()
