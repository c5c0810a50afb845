"""The base of every error a user can act on: the programs print its one-line message."""


class UserError(Exception):
  """A bad flag, file or run directory, or a run that cannot go on; str() is one line saying
  what happened and what to do. `exit_code` is the programs' exit status for it."""
  exit_code = 2
