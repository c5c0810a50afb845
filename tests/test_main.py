"""Every learner through the three programs: nothing in train, evaluate or export branches
on the method, so each option trains, evaluates, exports and visualizes from its flags."""

import json
import os
import shlex

import pytest

import helpers

# Options are combined where they are independent, so each program start covers several.
# Meta Dropout itself is the programs' default learner (tests/test_end_to_end.py, test_faults.py,
# test_distribute.py); its noise on ResNet-12 is tested in tests/test_resnet.py.
LEARNER_FLAGS = [
    ['--learner=fomaml'],
    ['--learner=metasgd', '--meta_dropout', '--bn_mode=inductive'],
    ['--learner=anil', '--zero_head'],
    ['--learner=maml', '--lslr', '--bn_mode=per_step', '--msl_iters=2', '--first_order_iters=1',
     '--inner_momentum=0.5', '--inner_weight_decay=0.01', '--meta_optimizer=sgd',
     '--lr_schedule=cosine', '--n_steps=2'],
    ['--maml', '--bn_mode=running', '--adapt_params=conv3,dense', '--lr_schedule=step',
     '--lr_step_iters=1'],
    ['--learner=maml', '--backbone=resnet12', '--resnet_widths=2,3,2,4', '--normalize',
     '--augment'],
]


@pytest.mark.slow
@pytest.mark.parametrize('learner_flags', LEARNER_FLAGS,
                         ids=['_'.join(f.strip('-').split('=')[-1] for f in flags)
                              for flags in LEARNER_FLAGS])
def test_every_learner_trains_evaluates_and_exports(tmp_path, capsys, learner_flags):
  data_dir = str(tmp_path / 'data')
  helpers.write_tiny_shards(data_dir, classes=(12, 16), instances=8)
  savedir = str(tmp_path / 'run')
  args = [f'--savedir={savedir}', f'--data_dir={data_dir}', '--way=3', '--shot=1',
          '--query=2', '--n_steps=1', '--metabatch=2', '--n_train_iters=3',
          '--save_freq=3', '--eval_freq=1000', '--log_freq=1',
          '--n_test_mc_samp=2', *learner_flags]
  if not any(f.startswith('--backbone') for f in learner_flags):
    args.append('--channels=4')
  assert helpers.run_program('train', *args) == 0, capsys.readouterr().err[-3000:]
  saved = json.load(open(os.path.join(savedir, 'config.json')))
  for flag in learner_flags:
    key, _, value = flag.lstrip('-').partition('=')
    assert str(saved[key]).lower() == (value or 'true').lower(), (key, saved[key])
  assert helpers.run_program('evaluate', f'--savedir={savedir}', '--n_test_iters=4') == 0, \
      capsys.readouterr().err[-3000:]
  result = json.load(open(os.path.join(savedir, 'eval_test.json')))
  assert result['checkpoint_step'] == 3 and len(result['per_episode_accuracy']) == 4
  noisy = '--learner=metadrop' in learner_flags or '--meta_dropout' in learner_flags
  assert result['mc_samples'] == (2 if noisy else 1)
  assert helpers.run_program('export', f'--savedir={savedir}') == 0, capsys.readouterr().err[-3000:]
  assert os.path.exists(os.path.join(savedir, 'export', 'saved_model.pb'))
  if '--zero_head' in learner_flags:  # another way than trained
    assert helpers.run_program('evaluate', f'--savedir={savedir}', '--n_test_iters=2',
                       '--way=4') == 0, capsys.readouterr().err[-3000:]
    # the 4-episode result stays; this 2-episode one goes beside it
    assert json.load(open(os.path.join(savedir, 'eval_test.json')))['n_episodes'] == 4
    assert json.load(open(os.path.join(savedir, 'eval_test.2ep.json')))['n_episodes'] == 2


@pytest.mark.parametrize('args, words', [
    (['--n_train_iter=5'], "Unknown command line flag 'n_train_iter'. Did you mean: n_train_iters"),
    (['--way=abc'], 'flag --way=abc'),
])
def test_flag_errors_are_one_line_and_exit_2(capsys, args, words):
  assert helpers.run_program('train', *args) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and words in err


@pytest.mark.slow
def test_the_advice_for_a_contradicting_flag_runs_when_pasted(tmp_path, capsys):
  _, run = helpers.saved_run(tmp_path)
  assert helpers.run_program('train', f'--savedir={run}', '--way=4') == 2
  advice = capsys.readouterr().err.strip().split('start another run: ')[1]
  args = shlex.split(advice)
  assert args[:2] == ['python', 'train.py']
  assert helpers.run_program('train', *args[2:]) == 0, capsys.readouterr().err[-2000:]
  with open(os.path.join(f'{run}_way4', 'config.json')) as f:
    assert json.load(f)['way'] == 4


def test_evaluate_scores_another_episode_seed_beside_the_run_result(tmp_path, capsys):
  config, run = helpers.saved_run(tmp_path)
  assert helpers.run_program('evaluate', f'--savedir={run}', '--n_test_iters=2',
                             f'--episode_seed={config.seed + 1}') == 0, capsys.readouterr().err
  assert f'episode seed {config.seed + 1}' in capsys.readouterr().out
  with open(os.path.join(run, f'eval_test_seed{config.seed + 1}.json')) as f:
    assert json.load(f)['seed'] == config.seed + 1
  assert not os.path.exists(os.path.join(run, 'eval_test.json'))
  assert helpers.run_program('evaluate', f'--savedir={run}', '--episode_seed=-1') == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and '--episode_seed=-1 must be in [0, 2**31)' in err


def test_export_writes_a_savedmodel_and_keeps_a_non_empty_folder(tmp_path, capsys):
  _, run = helpers.saved_run(tmp_path)
  target = tmp_path / 'served'
  target.mkdir()
  (target / 'notes.txt').write_text('mine')
  assert helpers.run_program('export', f'--savedir={run}', f'--export_dir={target}') == 2
  assert 'overwrite' in capsys.readouterr().err and os.listdir(target) == ['notes.txt']
  assert helpers.run_program('export', f'--savedir={run}', f'--export_dir={target}',
                             '--overwrite') == 0, capsys.readouterr().err[-2000:]
  assert f'wrote SavedModel to {target}' in capsys.readouterr().out
  assert os.path.exists(target / 'saved_model.pb')
