"""config.json of every run ever written, read as today's Config: the one place that knows how
the settings changed. A key added since a run was written takes the value that reproduces
that run (ADDED_KEYS); anything else missing, unknown or of the wrong type is a one-line
error naming the file and the key."""

import dataclasses
import json
import math

from metadrop_tf import config as config_lib

ConfigError = config_lib.ConfigError

# Keys added after runs were committed, with the value that reproduces those runs: a saved
# config.json without one loads with this value (logged); any other missing key is an error.
ADDED_KEYS = {
    'test_metabatch': 0, 'learner': '', 'meta_dropout': False, 'adapt_params': '',
    'inner_momentum': 0.0, 'inner_weight_decay': 0.0, 'zero_head': False, 'lslr': False,
    'msl_iters': 0, 'first_order_iters': 0, 'meta_optimizer': 'adam', 'meta_momentum': 0.9,
    'lr_schedule': 'constant', 'lr_step_iters': 10000, 'lr_step_gamma': 0.5,
    'adam_epsilon': 1e-7,  # Keras' default, which the runs made before this key used
    'gradient_checkpointing': False, 'strategy': 'auto', 'cpu_devices': 0,
    'backbone': 'conv4', 'resnet_widths': '64,160,320,640', 'augment': False,
    'normalize': False, 'noise_type': 'metadrop', 'noise_scale': 0.5, 'inner_mixup': '',
    'mixup_alpha': 2.0, 'noise_penalty': 0.01, 'test_mc_chunks': 1,
    'checkpoint_kept_steps': 0, 'import_modules': '', 'bitwise_reproducible': False,
}


def from_json(cls, text: str, source: str = 'config') -> tuple:
  """Parses JSON written by Config.to_json into `cls` (Config); returns (Config, [keys that
  took ADDED_KEYS defaults]).

  Every error is one line naming `source` and the key: invalid JSON, unknown or missing
  keys, a value of the wrong type (an int where a bool belongs, a string for a number,
  null, a non-finite number). The values are not validated here (see validate()).
  """
  try:
    values = json.loads(text)
  except json.JSONDecodeError as e:
    raise ConfigError(f'{source} is not valid JSON: {e}; fix it or delete the run '
                      'directory') from None
  if not isinstance(values, dict):
    raise ConfigError(f'{source} holds a JSON {type(values).__name__}, not an object of '
                      'settings')
  if isinstance(values.get('import_modules'), str):  # they declare options of their own
    from metadrop_tf import components  # pylint: disable=g-import-not-at-top  # imports this
    components.import_modules(values['import_modules'])
  types = {f.name: f.type for f in dataclasses.fields(cls) if f.name in config_lib.FIELDS}
  types.update({k: type(o.default) for k, o in config_lib.OPTIONS.items() if k not in types})
  unknown = sorted(set(values) - set(types))
  if unknown:
    raise ConfigError(f'{source} has unknown keys {unknown}')
  missing = sorted(set(config_lib.FIELDS) - set(values) - set(ADDED_KEYS))
  if missing:
    raise ConfigError(f'{source} lacks the keys {missing}; restore the file (flags.cfg '
                      'beside it lists the same settings)')
  added = sorted(k for k in ADDED_KEYS if k in types and k not in values)
  parsed = {k: ADDED_KEYS[k] for k in added}
  for key, value in values.items():
    parsed[key] = _typed(key, value, types[key], source)
  return cls.make(**parsed), added


def _typed(key, value, kind, source):
  """value as `kind` (bool, int, float or str), or ConfigError naming the key."""
  if kind is float and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
  if ok and kind is float and not math.isfinite(value):
    ok = False
  if not ok:
    expected = 'a finite number' if kind is float else {
        bool: 'true or false', int: 'an integer', str: 'a string'}[kind]
    raise ConfigError(f'{source}: "{key}" is {json.dumps(value)}; expected {expected}')
  return value
