"""Options belong to the components that read them: one that does not apply is a one-line error."""

import dataclasses
import glob
import os

from absl import flags
import pytest

import helpers
from metadrop_tf import components
from metadrop_tf import config as config_lib
from metadrop_tf import learners
from metadrop_tf.learners import base
from metadrop_tf.learners import gradient
from metadrop_tf.runtime import checkpoints

# A value other than the default for every option of the gradient learners.
GRADIENT_OPTIONS = {'adapt_params': 'head', 'first_order': True, 'inner_momentum': 0.5,
                    'inner_weight_decay': 0.1, 'zero_head': True, 'lslr': True, 'msl_iters': 2,
                    'first_order_iters': 2, 'gradient_checkpointing': True,
                    'bn_mode': 'inductive', 'inner_mixup': 'input', 'meta_dropout': True,
                    'noise_type': 'fixed_mult'}


def _error(**settings):
  """The error of the settings, checked in the order the programs check them."""
  config = config_lib.Config(**settings)
  with pytest.raises(config_lib.ConfigError) as e:
    components.check(config)
    learners.check(config.validate())
  assert '--' not in str(e.value)  # the library names settings, the programs flags
  return helpers.as_printed(e.value)


def test_the_gradient_learners_declare_every_option_tested_here():
  assert set(GRADIENT_OPTIONS) == set(gradient.GradientLearner.OPTIONS)


@pytest.mark.parametrize('learner', ['csn', 'metalstm'])
@pytest.mark.parametrize('option', sorted(GRADIENT_OPTIONS))
def test_gradient_learner_options_are_errors_for_other_learners(learner, option):
  if option in learners.REGISTRY[learner].OPTIONS:
    learners.check(config_lib.Config(learner=learner, **{option: GRADIENT_OPTIONS[option]}))
    return
  message = _error(learner=learner, **{option: GRADIENT_OPTIONS[option]})
  assert f'--{option}' in message and f'--learner={learner}' in message, message
  assert '\n' not in message


@pytest.mark.parametrize('settings, words', [
    (dict(resnet_widths='32,64,128,256'),
     '--resnet_widths=32,64,128,256 does not apply to --backbone=conv4'),
    (dict(learner='metadrop', noise_scale=0.3),
     '--noise_scale=0.3 does not apply to --noise_type=metadrop'),
    (dict(learner='metadrop', noise_type='vib', noise_scale=0.3),
     '--noise_scale=0.3 does not apply to --noise_type=vib'),
    (dict(maml=True, noise_scale=0.3), '--noise_scale=0.3 applies only with --noise_type='),
    (dict(checkpoint_kept_steps=1),
     '--checkpoint_kept_steps=1 applies only with --gradient_checkpointing'),
    (dict(maml=True, mixup_alpha=1.0), '--mixup_alpha=1.0 applies only with --inner_mixup='),
    (dict(learner='metadrop', noise_penalty=0.1),
     '--noise_penalty=0.1 does not apply to --noise_type=metadrop'),
])
def test_options_of_unused_components_name_the_option_and_the_component(settings, words):
  assert _error(**settings).startswith(words)


@pytest.mark.parametrize('settings', [
    dict(backbone='resnet12', resnet_widths='32,64,128,256'),
    dict(learner='metadrop', noise_type='fixed_add', noise_scale=0.3),
    dict(learner='metadrop', noise_type='info_dropout', noise_penalty=0.1),
    dict(gradient_checkpointing=True, checkpoint_kept_steps=1),
    dict(maml=True, inner_mixup='manifold', mixup_alpha=1.0),
    dict(learner='csn', first_order=True),
    dict(channels=16),
])
def test_options_of_used_components_are_accepted(settings):
  learners.check(config_lib.Config(**settings).validate())


@pytest.mark.parametrize('settings, words', [
    (dict(bn_mode='batch'), "--bn_mode=batch is unknown; choose one of ['inductive', "
                            "'per_step', 'running', 'transductive']"),
    (dict(maml=True, inner_mixup='cutmix'), "--inner_mixup=cutmix is unknown; choose one of "
                                            "['input', 'manifold']"),
    (dict(noise_type='gauss'), '--noise_type=gauss is unknown; choose one of'),
])
def test_unregistered_choices_name_the_registered_ones(settings, words):
  assert _error(**settings).startswith(words)


def test_a_new_learner_on_the_base_class_accepts_no_gradient_options():
  name = 'toy_base_learner'

  @learners.register(name)
  class Toy(base.Learner):  # pylint: disable=unused-variable
    pass

  try:
    message = _error(learner=name, lslr=True)
    assert message.startswith(f'--lslr does not apply to --learner={name}')
    assert _error(learner=name, inner_momentum=0.9).startswith('--inner_momentum=0.9')
  finally:
    del learners.REGISTRY[name]
    del components.REGISTRY[('learner', name)]


def test_declaring_an_option_that_is_not_a_setting_fails():
  with pytest.raises(ValueError, match="'no_such_option'"):
    components.declare('backbone', 'toy', ('no_such_option',))


COMMITTED = sorted(glob.glob(os.path.join(helpers.REPO, 'runs', '**', 'config.json'),
                             recursive=True))


@pytest.mark.parametrize('path', COMMITTED, ids=[os.path.relpath(os.path.dirname(p),
                                                                 helpers.REPO)
                                                 for p in COMMITTED])
def test_every_committed_run_uses_only_options_of_its_components(path):
  assert COMMITTED
  learners.check(checkpoints.read_config(os.path.dirname(path)))


FLAGFILES = sorted(glob.glob(os.path.join(helpers.REPO, 'configs', '*.cfg')))


@pytest.mark.parametrize('path', FLAGFILES, ids=[os.path.basename(p) for p in FLAGFILES])
def test_every_committed_flagfile_uses_only_options_of_its_components(path):
  from metadrop_tf.cli import flags as flags_lib  # pylint: disable=g-import-not-at-top
  from metadrop_tf.cli import main  # pylint: disable=g-import-not-at-top
  main.define_program_flags('train')
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(['train', f'--flagfile={path}'])
    learners.check(flags_lib.config_from_flags())
  finally:
    flags.FLAGS.unparse_flags()


@pytest.mark.parametrize('args, words', [
    (['--resnet_widths=32,64,128,256'], '--resnet_widths=32,64,128,256 does not apply to '
     '--backbone=conv4'),
    (['--learner=csn', '--lslr'], '--lslr does not apply to --learner=csn'),
])
def test_train_exits_2_with_the_one_line(tmp_path, capsys, args, words):
  data_dir = str(tmp_path / 'data')
  helpers.write_tiny_shards(data_dir)
  status = helpers.run_program('train', f'--savedir={tmp_path / "run"}',
                               f'--data_dir={data_dir}', '--way=3', *args)
  err = capsys.readouterr().err.strip()
  assert status == 2 and err.splitlines() == [f'error: {err[len("error: "):]}']
  assert err.startswith(f'error: {words}')
  assert not os.path.exists(tmp_path / 'run' / 'config.json')


def test_fields_of_the_config_are_known_to_the_check():
  owned = {o for c in components.REGISTRY.values() for o in c.options}
  assert owned <= {f.name for f in dataclasses.fields(config_lib.Config)}


@pytest.fixture
def declared_option():
  """A backbone 'toy_net' declaring a new option --toy_depth; removed afterwards."""
  component = components.declare(
      'backbone', 'toy_net', {'toy_depth': config_lib.Option(3, 'Layers of the toy net.'),
                              'channels': None})
  yield component
  del components.REGISTRY[('backbone', 'toy_net')]
  del config_lib.OPTIONS['toy_depth']


def test_a_declared_option_is_a_setting_recorded_only_with_its_component(declared_option):
  assert config_lib.Config().toy_depth == 3  # its default, like a field's
  config = config_lib.Config.make(backbone='toy_net', toy_depth=5)
  assert config.toy_depth == 5 and config.replace(way=3).toy_depth == 5
  components.check(config)
  recorded = components.recorded(config)
  assert recorded.to_dict()['toy_depth'] == 5
  loaded, added = config_lib.Config.from_json(recorded.to_json())
  assert loaded == recorded and loaded.toy_depth == 5 and not added
  conv4 = components.recorded(config_lib.Config())
  assert 'toy_depth' not in conv4.to_dict()  # a run without the component does not record it
  with pytest.raises(config_lib.ConfigError, match=r'^`toy_depth=5` does not apply to '
                     r'`backbone=conv4`: it is an option of `backbone=toy_net`; leave it out$'):
    components.check(config_lib.Config.make(toy_depth=5))
  with pytest.raises(AttributeError, match='no setting'):
    config_lib.Config().toy_width  # pylint: disable=expression-not-assigned


@pytest.mark.parametrize('name, option, words', [
    ('way', config_lib.Option(3, 'h'), "declares option 'way', which is a setting of every run"),
    ('toy_list', config_lib.Option([1], 'h'), 'must be a bool, int, float or str'),
    ('toy_depth', config_lib.Option(4, 'other help'), "declares option 'toy_depth' again"),
    ('toy_raw', 3, 'must be a config.Option'),
])
def test_a_bad_declaration_is_refused_where_it_is_made(declared_option, name, option, words):
  with pytest.raises(ValueError, match=words):
    components.declare('backbone', 'toy_other', {name: option})
  assert ('backbone', 'toy_other') not in components.REGISTRY
