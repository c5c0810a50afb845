"""Tests of metadrop_tf/cli/messages.py: library settings worded as flags, TF lines dropped."""

import ast
import logging
import os

from absl import flags
import pytest

import helpers
from metadrop_tf.cli import messages

KNOWN = {'way', 'maml', 'lslr', 'learner', 'overwrite', 'checkpoint', 'data_dir'}


@pytest.mark.parametrize('library, printed', [
    ('`way=5` must be at least 2', '--way=5 must be at least 2'),
    ('`lslr=True` does not apply to `learner=csn`', '--lslr does not apply to --learner=csn'),
    ('`maml` contradicts `learner=anil`', '--maml contradicts --learner=anil'),
    ('pass `overwrite=False`', 'pass --nooverwrite'),
    ('pass `checkpoint=<an earlier one>`', 'pass --checkpoint=<an earlier one>'),
    ('it is an option of `learner=anil, maml or metasgd`',
     'it is an option of --learner=anil, maml or metasgd'),
    ('did you mean `data_dir=/a b/omniglot`?', 'did you mean --data_dir=/a b/omniglot?'),
    ('`not_a_flag=3` and `Way=5` stay', '`not_a_flag=3` and `Way=5` stay'),
    ('python data/prepare.py --dataset=omniglot', 'python data/prepare.py --dataset=omniglot'),
])
def test_settings_are_worded_as_the_flags_of_the_program(library, printed):
  assert messages.as_flags(library, KNOWN) == printed


def test_a_warning_through_the_filter_names_the_flag():
  record = logging.LogRecord('absl', logging.WARNING, __file__, 1,
                             'pass `test_mc_chunks=%d` to take them %d at a time', (3, 10), None)
  assert messages.FlagWording(KNOWN | {'test_mc_chunks'}).filter(record)
  assert record.getMessage() == 'pass --test_mc_chunks=3 to take them 10 at a time'


def test_tensorflows_own_lines_are_dropped_and_the_programs_kept():
  drop = messages.DropTFLines()
  tf_line = logging.LogRecord('absl', logging.INFO, __file__, 1,
                              'Assets written to: %s', ('x',), None)
  own = logging.LogRecord('absl', logging.INFO, __file__, 1, 'wrote %s', ('x',), None)
  assert not drop.filter(tf_line) and drop.filter(own)


def _error_strings(path):
  """The string pieces of the messages raised in a module (f-strings' literal parts too)."""
  tree = ast.parse(open(path).read())
  for node in ast.walk(tree):
    if isinstance(node, ast.Raise) and node.exc is not None:
      for piece in ast.walk(node.exc):
        if isinstance(piece, ast.Constant) and isinstance(piece.value, str):
          yield piece.lineno, piece.value


def test_library_errors_name_settings_not_flags():
  library = os.path.join(helpers.REPO, 'metadrop_tf')
  flagged = []
  for folder, _, names in os.walk(library):
    if os.path.relpath(folder, library).startswith('cli'):
      continue  # the command line names its flags
    for name in (n for n in names if n.endswith('.py')):
      path = os.path.join(folder, name)
      flagged += [f'{os.path.relpath(path, library)}:{line}: {text}'
                  for line, text in _error_strings(path)
                  if '--' in text and 'prepare.py' not in text]  # a command to paste
  assert not flagged, flagged


def test_parse_errors_are_one_line_without_absl_prefix(tmp_path):
  missing = str(tmp_path / 'nope.cfg')
  with pytest.raises(flags.Error) as e:
    flags.FlagValues()(['train.py', f'--flagfile={missing}'])
  line = messages.parse_error(e.value)
  assert line.startswith('Unable to open flagfile: ') and missing in line, line
  assert line.endswith(' (--help lists the flags)') and '\n' not in line
