"""What the programs print of library and TensorFlow messages.

The library names a setting `name=value` (or `name`), as a Python caller passes it to Config
(errors.py); here it is the flag --name=value (`name=True`: --name, `name=False`: --noname).
Names that are not flags of the program are left as they are. TensorFlow's own log lines
between the program's (checkpoint saves, SavedModel writes) are dropped at the default
verbosity."""

import logging
import re
from typing import Container
from typing import Optional

from absl import flags

_SETTING = re.compile(r'`([a-z_][a-z0-9_]*)(?:=([^`]*))?`')
QUIET_TF_LINES = ('Sharding callback duration', 'Assets written to', 'Writing fingerprint to',
                  'Function `', 'Found untraced functions')


def parse_error(error: Exception) -> str:
  """absl's error about the command line (an unknown flag, a bad value, a missing --flagfile)
  as one line, without absl's 'ERROR::' prefix."""
  text = re.sub(r'^ERROR::\s*', '', ' '.join(str(error).split()))
  return f'{text} (--help lists the flags)'


def as_flags(message: str, known: Optional[Container] = None) -> str:
  """`message` with each `setting` among `known` (default: the defined absl flags) written as
  its flag."""
  known = flags.FLAGS if known is None else known

  def flag(match: re.Match) -> str:
    name, value = match.group(1), match.group(2)
    if name not in known:
      return match.group(0)
    if value is None or value == 'True':
      return f'--{name}'
    if value == 'False':
      return f'--no{name}'
    return f'--{name}={value}'
  return _SETTING.sub(flag, message)


class FlagWording(logging.Filter):
  """A logging filter that words the settings of a record's message as flags (a library
  warning that suggests a setting); `known` as as_flags."""

  def __init__(self, known: Optional[Container] = None):
    super().__init__()
    self.known = known

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    worded = as_flags(message, self.known)
    if worded != message:
      record.msg, record.args = worded, ()
    return True


class DropTFLines(logging.Filter):
  """A logging filter that drops TensorFlow's own lines (QUIET_TF_LINES)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(QUIET_TF_LINES)


# The programs' filters: one instance each, so that a program run again in the same process
# (tests) does not stack another copy on the absl logger.
FLAG_WORDING = FlagWording()
DROP_TF_LINES = DropTFLines()
