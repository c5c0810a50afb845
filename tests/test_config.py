"""Tests of Config: validation names the flag, JSON round trip."""

import pytest

from metadrop_tf import config as config_lib

Config = config_lib.Config


@pytest.mark.parametrize('changes, flag', [
    ({'dataset': 'cifar'}, '--dataset'),
    ({'way': 0}, '--way'),
    ({'way': 5000}, '--way=5000'),
    ({'dataset': 'mimgnet', 'way': 21}, '--way=21'),
    ({'shot': 10, 'query': 15}, '--shot=10 plus --query=15'),
    ({'inner_lr': 0.0}, '--inner_lr'),
    ({'precision': 'float16'}, '--precision'),
    ({'bn_mode': 'inductive'}, '--bn_mode'),
    ({'val_characters': 5, 'dataset': 'mimgnet', 'way': 5}, '--val_characters'),
    ({'eval_split': 'val'}, '--eval_split=val'),
    ({'val_characters': 3}, '--way=20 exceeds the 12 classes'),
])
def test_validation_names_the_flag(changes, flag):
  with pytest.raises(config_lib.ConfigError) as err:
    Config(**changes).validate()
  message = str(err.value)
  assert flag in message and '\n' not in message


def test_reference_defaults_are_valid_and_derived_values():
  config = Config().validate()
  assert config.n_channels == 64 and config.image_shape == (28, 28, 1)
  assert config.resolved_data_dir.endswith('omniglot')
  assert Config(dataset='mimgnet', way=5).n_channels == 32
  assert Config(maml=True).test_mc_samples == 1 and Config().test_mc_samples == 30
  assert Config(val_characters=10).split_classes() == {'train': 4760, 'test': 1692, 'val': 40}


def test_json_round_trip_and_unknown_keys():
  config = Config(way=5, shot=5, maml=True, inner_lr=0.4, precision='bfloat16')
  assert Config.from_json(config.to_json()) == config
  with pytest.raises(config_lib.ConfigError, match='unknown keys'):
    Config.from_json('{"wya": 5}', source='x.json')
  with pytest.raises(config_lib.ConfigError, match='x.json is not valid JSON'):
    Config.from_json('{', source='x.json')
