"""The base of every error a user can act on: the programs print its one-line message.

A message names a setting the way a Python caller passes it, in backticks: `way=5`, or `maml`
for a switch. Library code does not know the command line; the programs word these as flags
(--way=5, --maml: metadrop_tf/cli/messages.py).
"""


class UserError(Exception):
  """A bad setting, file or run directory, or a run that cannot go on; str() is one line saying
  what happened and what to do. `exit_code` is the programs' exit status for it."""
  exit_code = 2


def first_line(error: BaseException, limit: int = 200) -> str:
  """The first line of an exception's message (its type name if empty), at most `limit`
  characters: what a one-line error quotes of a library's multi-line message."""
  text = str(error).strip()
  return (text.splitlines()[0] if text else type(error).__name__)[:limit]
