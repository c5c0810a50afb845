"""Which component owns which option, declared by each component beside its code.

A component is a choice a run makes: its learner, backbone, noise type (noisy learners),
mixup, batch-norm mode, gradient checkpointing. Each declares the settings it reads beyond the
core run settings (`declare`, called by the component's own module): fields of Config, or new
options (config.Option) that become flags, --help lines and keys of config.json with no other
change. An owned option that a run sets to a value other than its default must belong to one
of the components the run uses; otherwise `check` raises a one-line ConfigError naming the
option and the component (exit status 2), so that no option is recorded in config.json as if
it had taken effect. No TF import here.
"""

import importlib
import os
import sys
from typing import Collection
from typing import Mapping
from typing import NamedTuple

from metadrop_tf import config as config_lib


class Component(NamedTuple):
  """kind ('learner', 'backbone', ...), name, the setting that chooses it (`learner=anil`, as
  errors.py writes settings), the options it reads."""
  kind: str
  name: str
  choice: str
  options: frozenset


# How a run chooses each kind of component: kind -> (flag, the chosen name or None).
CHOICES = {
    'learner': ('learner', lambda c: c.learner_name),
    'backbone': ('backbone', lambda c: c.backbone),
    'noise type': ('noise_type', lambda c: c.noise_type if c.noisy else None),
    'mixup': ('inner_mixup', lambda c: c.inner_mixup or None),
    'batch norm': ('bn_mode', lambda c: c.bn_mode),
    'gradient checkpointing': ('gradient_checkpointing',
                               lambda c: 'True' if c.gradient_checkpointing else None),
}
REGISTRY: dict = {}  # (kind, name) -> Component


def _add_option(name: str, option: config_lib.Option, component: str) -> None:
  """Registers a setting a component declares (config.OPTIONS); ValueError if it would shadow
  a field of Config or another declaration of the same name, or has no flag type."""
  if not isinstance(option, config_lib.Option):
    raise ValueError(f'{component}: option {name!r} must be a config.Option(default, help)')
  if name in config_lib.FIELDS:
    raise ValueError(f'{component} declares option {name!r}, which is a setting of every run; '
                     'name it otherwise')
  if type(option.default) not in (bool, int, float, str):
    raise ValueError(f'{component}: the default of option {name!r} must be a bool, int, '
                     f'float or str, not {type(option.default).__name__}')
  if config_lib.OPTIONS.get(name, option) != option:
    raise ValueError(f'{component} declares option {name!r} again with another default or '
                     'help')
  config_lib.OPTIONS[name] = option


def declare(kind: str, name: str, options: Collection[str] | Mapping = ()) -> Component:
  """Records that component `name` of `kind` (a key of CHOICES) reads `options`: names of
  settings, or a mapping name -> config.Option declaring new ones (None: declared elsewhere).
  A new option becomes a flag, a --help line, a check (set only with this component) and a
  key of config.json. Called once per component, by its module; redeclaring replaces."""
  if kind not in CHOICES:
    raise ValueError(f'unknown component kind {kind!r}; choose one of {list(CHOICES)}')
  label = f'{kind} {name!r}'
  for option, spec in (options.items() if isinstance(options, Mapping) else ()):
    if spec is not None:
      _add_option(option, spec, label)
  unknown = sorted(set(options) - set(config_lib.setting_names()))
  if unknown:
    raise ValueError(f'{label} reads options that are not settings: {unknown}')
  component = Component(kind, name, f'`{CHOICES[kind][0]}={name}`', frozenset(options))
  REGISTRY[(kind, name)] = component
  return component


def import_modules(names: str) -> None:
  """Imports the comma-separated modules `names` (components of the user's, which declare
  and register themselves), searching the current directory too; ConfigError naming the module
  if one fails to import."""
  names = [n.strip() for n in names.split(',') if n.strip()]
  if names and os.getcwd() not in sys.path:
    sys.path.append(os.getcwd())
  for name in names:
    try:
      importlib.import_module(name)
    except Exception as e:  # pylint: disable=broad-except  # any failure of the user's module
      first = (str(e).strip().splitlines() or [''])[0][:160]
      raise config_lib.ConfigError(f'`import_modules={name}`: cannot import it '
                                   f'({type(e).__name__}: {first})') from None


def require(kind: str, name: str) -> None:
  """ConfigError unless a component `name` of `kind` is declared, naming the declared ones:
  '`learner=reptile` is unknown; choose one of [...]'."""
  names = sorted(n for k, n in REGISTRY if k == kind)
  if name not in names:
    raise config_lib.ConfigError(f'`{CHOICES[kind][0]}={name}` is unknown; choose one of '
                                 f'{names}')


def used_by(config: config_lib.Config) -> list:
  """The declared components a Config uses."""
  chosen = [(kind, pick(config)) for kind, (_, pick) in CHOICES.items()]
  return [REGISTRY[key] for key in chosen if key in REGISTRY]


def owners(option: str) -> list:
  """The components that declare `option`."""
  return [c for c in REGISTRY.values() if option in c.options]


def _describe(holders: list) -> str:
  """'`learner=anil, maml or metasgd`' (components of one kind share the setting)."""
  parts = []
  for kind in dict.fromkeys(c.kind for c in holders):
    names = sorted(c.name for c in holders if c.kind == kind)
    listed = ', '.join(names[:-1]) + ' or ' + names[-1] if len(names) > 1 else names[0]
    parts.append(f'`{CHOICES[kind][0]}={listed}`')
  return ' or '.join(parts)


def used_options(config: config_lib.Config) -> set:
  """The options the components of `config` read."""
  return {o for c in used_by(config) for o in c.options}


def check(config: config_lib.Config) -> None:
  """ConfigError for the first owned option set away from its default that no component of
  the run reads: '`noise_scale=0.3` does not apply to `noise_type=metadrop`; ...'."""
  default = config_lib.Config()
  used = used_options(config)
  for option, value in config.to_dict().items():
    holders = owners(option)
    if not holders or option in used or value == getattr(default, option):
      continue
    kinds = {c.kind for c in holders}
    same_kind = [c for c in used_by(config) if c.kind in kinds]
    where = _describe(holders)
    if same_kind:
      raise config_lib.ConfigError(
          f'`{option}={value}` does not apply to {same_kind[0].choice}: it is an option of '
          f'{where}; leave it out')
    raise config_lib.ConfigError(f'`{option}={value}` applies only with {where}; '
                                 f'leave it out or add {where}')


def recorded(config: config_lib.Config) -> config_lib.Config:
  """`config` holding exactly the declared options (config.OPTIONS) its components read, each
  with its value (its default included): what config.json records. After `check`, the options
  it drops hold their defaults."""
  used = sorted(o for o in used_options(config) if o in config_lib.OPTIONS)
  return config.replace(extensions=tuple((o, getattr(config, o)) for o in used))
