"""`--help` of the programs: the program's own flags first, then the run settings grouped by the
component that reads them (metadrop_tf.components)."""

import os
import sys
import textwrap
from typing import Sequence

from absl import flags

from metadrop_tf import components
from metadrop_tf import config as config_lib

FLAGS = flags.FLAGS
HELP_ARGS = ('--help', '-h', '-?', '--helpshort')  # any of these prints the program's help
# Settings evaluate.py and export.py take from the command line; the rest come from the run.
EVALUATION_SETTINGS = ('data_dir', 'n_test_iters', 'n_test_mc_samp', 'test_mc_chunks',
                       'test_metabatch', 'precision', 'intra_op_threads', 'inter_op_threads',
                       'bitwise_reproducible', 'strategy', 'cpu_devices')


def asks_for_help(argv: Sequence[str]) -> bool:
  """Whether the arguments after the program name ask for its help."""
  return any(arg in HELP_ARGS for arg in argv[1:])


def show(text: str) -> None:
  """Prints `text`; a reader that stops early (`train.py --help | head`) is not an error."""
  try:
    print(text, flush=True)
  except BrokenPipeError:  # the rest goes nowhere, and so does the flush at exit
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def describe_flag(name: str) -> str:
  """'  --name: help (default: value)', wrapped; '--[no]name' for a boolean."""
  flag = FLAGS[name]
  shown = f'[no]{name}' if flag.boolean else name
  default = flag.default_as_str if flag.default is not None else 'none'
  text = f'--{shown}: {flag.help} (default: {default})'
  return textwrap.fill(text, width=100, initial_indent='  ', subsequent_indent='      ')


def _section(title: str, names) -> list[str]:
  names = [n for n in names if n in FLAGS]
  return [f'\n{title}:'] + [describe_flag(n) for n in names] if names else []


def _component_sections(learner: str | None) -> list[str]:
  """One section per kind of component, headed by the registered names (a component of the
  user's, imported by --import_modules, among them), listing what each of its components
  reads."""
  lines = []
  for kind, (flag, _) in components.CHOICES.items():
    names = sorted(c.name for c in components.REGISTRY.values() if c.kind == kind)
    registered = '' if FLAGS[flag].boolean else f'; registered: {", ".join(names)}'
    members = [c for c in components.REGISTRY.values() if c.kind == kind and c.options]
    if kind == 'learner' and learner:
      members = [c for c in members if c.name == learner]
      if not members:
        lines.append(f'\n--learner={learner} takes no options beyond the run settings.')
        continue
    options = sorted({o for c in members for o in c.options})
    for option in options:
      users = sorted(c.name for c in members if option in c.options)
      title = f'{kind} options (--{flag}=...{registered})' if option == options[0] else None
      if title:
        lines.append(f'\n{title}:')
      lines.append(describe_flag(option))
      lines.append(f'      used by --{flag}={", ".join(users)}')
  return lines


def program_help(program: str, doc: str, own: list[str], argv: list[str]) -> str:
  """The help text of `program` ('train', 'evaluate', 'export', 'serve'); `own`: its own flag
  names. With --learner=X among `argv`, the learner section shows only what X takes."""
  learner = next((a.split('=', 1)[1] for a in argv if a.startswith('--learner=')), None)
  lines = [(doc or '').strip(), f'\n{program} flags:'] + [describe_flag(n) for n in own]
  if program == 'serve':
    return '\n'.join(lines)
  if program != 'train':
    lines += _section('evaluation settings (the rest come from <savedir>/config.json; '
                      'train.py --help lists them)', EVALUATION_SETTINGS)
    return '\n'.join(lines)
  owned = {o for c in components.REGISTRY.values() for o in c.options}
  core = [name for name in config_lib.FIELDS if name not in owned]
  lines += _section('run settings', core)
  lines += _component_sections(learner)
  return '\n'.join(lines)
