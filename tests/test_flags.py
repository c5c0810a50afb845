"""Tests of the flags: every flagfile of configs/ and every committed run keeps its method."""

import glob
import os

from absl import flags
import pytest

import helpers
from metadrop_tf import components
from metadrop_tf import config as config_lib
from metadrop_tf import learners
from metadrop_tf.cli import flags as flags_lib
from metadrop_tf.runtime import checkpoints

FLAGS = flags.FLAGS
CONFIGS = sorted(glob.glob(os.path.join(helpers.REPO, 'configs', '*.cfg')))
RUNS = sorted(os.path.dirname(p) for p in glob.glob(  # runs with a checkpoint (not in progress)
    os.path.join(helpers.REPO, 'runs', '**', 'ckpt', 'checkpoint'), recursive=True))
RUNS = [os.path.dirname(r) for r in RUNS]


def _parse(*args):
  if 'seed' not in FLAGS:
    flags_lib.define_flags()
  FLAGS.unparse_flags()
  FLAGS(['prog', *args])


@pytest.mark.parametrize('path', CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_every_flagfile_gives_the_method_its_name_says(path):
  _parse(f'--flagfile={path}')
  config = flags_lib.config_from_flags()
  name = os.path.basename(path)[:-len('.cfg')]
  expected = 'metadrop' if name == 'smoke' else name.rsplit('_', 1)[-1]  # e.g. *_maml.cfg
  assert config.learner_name == expected


def test_sinusoid_takes_its_network_and_one_output_unless_told_otherwise():
  _parse('--dataset=sinusoid')
  config = flags_lib.config_from_flags()
  assert (config.way, config.backbone, config.n_channels) == (1, 'mlp', 40)
  _parse('--dataset=sinusoid', '--way=3')
  with pytest.raises(config_lib.ConfigError, match='`way=3`: sinusoid is regression'):
    flags_lib.config_from_flags()
  _parse('--way=7')
  assert flags_lib.config_from_flags().way == 7  # no dataset default applies to omniglot
  FLAGS.unparse_flags()


def test_the_reference_maml_flag_and_learner_flag():
  _parse('--maml')
  assert flags_lib.config_from_flags().learner_name == 'maml'
  _parse('--learner=metasgd', '--meta_dropout')
  config = flags_lib.config_from_flags()
  assert (config.learner_name, config.noisy, config.method) == ('metasgd', True,
                                                                 'metasgd+metadrop')
  _parse('--maml', '--learner=anil')
  with pytest.raises(config_lib.ConfigError, match='`maml` contradicts `learner=anil`'):
    flags_lib.config_from_flags()
  FLAGS.unparse_flags()


@pytest.mark.parametrize('run', RUNS, ids=[os.path.relpath(r, helpers.REPO) for r in RUNS])
def test_every_committed_run_loads_and_restores(run):
  config = checkpoints.read_config(run)
  if not config.learner:  # made before --learner: the reference's choice
    assert config.learner_name == ('maml' if config.maml else 'metadrop')
  assert config.learner_name in learners.REGISTRY
  learner = learners.build(config)
  path = checkpoints.restore(checkpoints.make_checkpoint(learner), run)
  assert os.path.basename(path).startswith('ckpt-')


def test_a_zero_head_run_may_be_evaluated_with_another_way():
  saved = config_lib.Config(way=5, zero_head=True).validate()
  _parse('--way=3')
  assert flags_lib.config_from_flags(saved).way == 3
  with pytest.raises(config_lib.ConfigError, match='--way=3 contradicts the run in RUN'):
    flags_lib.config_from_flags(saved.replace(zero_head=False))
  FLAGS.unparse_flags()


def test_every_setting_has_one_help_text_and_component_options_their_own_modules():
  documented = set(config_lib.HELP)
  assert not documented & set(flags_lib._HELP)  # pylint: disable=protected-access
  assert documented | set(flags_lib._HELP) == set(config_lib.FIELDS)  # pylint: disable=protected-access
  # Every field a component reads is documented beside a component, none in the core table.
  owned = {o for c in components.REGISTRY.values() for o in c.options} & set(config_lib.FIELDS)
  assert owned <= documented, sorted(owned - documented)
  for name in config_lib.FIELDS:
    assert flags_lib.help_text(name)
  with pytest.raises(ValueError, match='not a setting of Config'):
    config_lib.document(no_such_setting='text')
  with pytest.raises(ValueError, match='documented twice'):
    config_lib.document(lslr='another text')
