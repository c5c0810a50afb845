"""Learners: one module per method, registered by name (`--learner=NAME`).

  learners.build(config) -> the Learner a Config describes, around its network.
  @learners.register('name') on a Learner subclass with `from_config(network, config)` adds a
  method; see base.py for the interface and README "Adding a learner".
"""

from metadrop_tf import config as config_lib
from metadrop_tf import model as model_lib

REGISTRY = {}


def register(name: str):
  """Class decorator: makes the learner available as --learner=name."""
  def decorate(cls):
    if name in REGISTRY:
      raise ValueError(f'learner {name!r} is registered twice')
    REGISTRY[name] = cls
    cls.name = name
    return cls
  return decorate


def build(config, dtype='float32', network=None):
  """The learner of config.learner_name around `network` (default: the config's network)."""
  network = network or model_lib.build_model(config, dtype)
  try:
    return REGISTRY[config.learner_name].from_config(network, config)
  except ValueError as e:  # a bad --adapt_params
    raise config_lib.ConfigError(str(e)) from None


# The methods register themselves on import.
from metadrop_tf.learners import anil  # noqa: E402,F401
from metadrop_tf.learners import maml  # noqa: E402,F401
from metadrop_tf.learners import metadrop  # noqa: E402,F401
from metadrop_tf.learners import metasgd  # noqa: E402,F401
