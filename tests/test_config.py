"""Tests of Config: validation names the flag, JSON round trip, a damaged config.json."""

import json

import pytest

import helpers
from metadrop_tf import config as config_lib
from metadrop_tf import migration

Config = config_lib.Config


@pytest.mark.parametrize('changes, flag', [
    ({'dataset': 'cifar'}, '--dataset'),
    ({'way': 0}, '--way'),
    ({'way': 5000}, '--way=5000'),
    ({'dataset': 'mimgnet', 'way': 21}, '--way=21'),
    ({'shot': 10, 'query': 15}, '--shot=10 plus --query=15'),
    ({'inner_lr': 0.0}, '--inner_lr'),
    ({'inner_lr': float('inf')}, '--inner_lr=inf must be a positive finite number'),
    ({'meta_lr': float('nan')}, '--meta_lr=nan'),
    ({'grad_clip': float('inf')}, '--grad_clip=inf'),
    ({'eval_split': 'bogus'}, '--eval_split=bogus is not a split'),
    ({'precision': 'float16'}, '--precision'),
    ({'val_characters': 5, 'dataset': 'mimgnet', 'way': 5}, '--val_characters'),
    ({'eval_split': 'val'}, '--eval_split=val'),
    ({'val_characters': 3}, '--way=20 exceeds the 12 classes'),
    ({'dataset': 'sinusoid', 'backbone': 'mlp', 'way': 5}, '--way=5'),
    ({'dataset': 'sinusoid', 'backbone': 'mlp', 'way': 1, 'augment': True}, '--augment'),
    ({'inner_mixup': 'input'}, '--inner_mixup is a baseline for learners without noise'),
    ({'test_mc_chunks': 7}, '--test_mc_chunks=7 must divide --n_test_mc_samp=30'),
    ({'test_mc_chunks': 0}, '--test_mc_chunks=0 must be a positive integer'),
    ({'checkpoint_kept_steps': -1}, '--checkpoint_kept_steps=-1 must be >= 0'),
    ({'seed': -1}, '--seed=-1 must be in [0, 2**31)'),
    ({'seed': 2 ** 31}, '--seed=2147483648 must be in [0, 2**31)'),
    ({'dataset': 'sinusoid', 'backbone': 'mlp', 'way': 1, 'bn_mode': 'inductive'},
     '--bn_mode=inductive'),
])
def test_validation_names_the_flag(changes, flag):
  with pytest.raises(config_lib.ConfigError) as err:
    Config(**changes).validate()
  message = helpers.as_printed(err.value)
  assert flag in message and '\n' not in message and '--' not in str(err.value)


def test_reference_defaults_are_valid_and_derived_values():
  config = Config().validate()
  assert config.n_channels == 64 and config.image_shape == (28, 28, 1)
  assert config.resolved_data_dir.endswith('omniglot')
  assert Config(dataset='mimgnet', way=5).n_channels == 32
  assert Config(maml=True).test_mc_samples == 1 and Config().test_mc_samples == 30
  assert Config(val_characters=10).split_classes() == {'train': 4760, 'test': 1692, 'val': 40}


def test_json_round_trip_and_unknown_keys():
  config = Config(way=5, shot=5, maml=True, inner_lr=0.4, precision='bfloat16')
  assert Config.from_json(config.to_json()) == (config, [])
  with pytest.raises(config_lib.ConfigError, match='unknown keys'):
    Config.from_json('{"wya": 5}', source='x.json')
  with pytest.raises(config_lib.ConfigError, match='x.json is not valid JSON'):
    Config.from_json('{', source='x.json')


def _edited(**changes):
  values = json.loads(Config().to_json())
  for key, value in changes.items():
    if value is _DELETE:
      del values[key]
    else:
      values[key] = value
  return json.dumps(values)


_DELETE = object()


@pytest.mark.parametrize('changes, words', [
    ({'way': '20'}, '"way" is "20"; expected an integer'),
    ({'way': 20.0}, '"way" is 20.0; expected an integer'),
    ({'way': None}, '"way" is null; expected an integer'),
    ({'way': True}, '"way" is true; expected an integer'),
    ({'maml': 1}, '"maml" is 1; expected true or false'),
    ({'inner_lr': '0.1'}, '"inner_lr" is "0.1"; expected a finite number'),
    ({'inner_lr': None}, '"inner_lr" is null'),
    ({'dataset': 5}, '"dataset" is 5; expected a string'),
    ({'way': _DELETE}, "lacks the keys ['way']"),
])
def test_a_damaged_config_names_the_key(changes, words):
  with pytest.raises(config_lib.ConfigError) as err:
    Config.from_json(_edited(**changes), source='run/config.json')
  assert str(err.value).startswith('run/config.json') and words in str(err.value)
  assert '\n' not in str(err.value)


def test_non_finite_numbers_in_json_are_rejected():
  text = Config().to_json().replace('"inner_lr": 0.1', '"inner_lr": Infinity')
  with pytest.raises(config_lib.ConfigError, match='"inner_lr" is Infinity'):
    Config.from_json(text, source='c.json')
  with pytest.raises(config_lib.ConfigError, match='holds a JSON list'):
    Config.from_json('[1]', source='c.json')


def test_keys_added_after_a_run_take_their_logged_default():
  """A run made before a key existed still loads, with the value that reproduces it."""
  for key, default in migration.ADDED_KEYS.items():
    config, added = Config.from_json(_edited(**{key: _DELETE}), source='old.json')
    assert added == [key] and getattr(config, key) == default
  config, _ = Config.from_json(_edited(inner_lr=1), source='int.json')  # an int is a number
  assert config.inner_lr == 1.0 and isinstance(config.inner_lr, float)


def test_split_check_lists_the_splits_and_explains_omniglot_val():
  with pytest.raises(config_lib.ConfigError, match=r"`split=bogus` is not a split; choose "
                     r"one of \['train', 'val', 'test'\]"):
    config_lib.check_split('bogus', 'omniglot', 0)
  with pytest.raises(config_lib.ConfigError, match='held out of train with `val_characters'):
    config_lib.check_split('val', 'omniglot', 0)
  config_lib.check_split('val', 'omniglot', 5)
  config_lib.check_split('val', 'mimgnet', 0)
