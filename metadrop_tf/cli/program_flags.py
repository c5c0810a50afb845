"""Each program's own flags (beyond the run settings of flags.py): what `--help` shows first."""

from absl import flags

FLAGS = flags.FLAGS

OWN_FLAGS = {'train': [], 'evaluate': [], 'export': []}  # program -> its own flags (--help)
_defining = []  # the program whose flags are being defined


def _define(kind, name, default, help_text, **kwargs):
  """Defines a flag of this module unless already defined (tests run several programs)."""
  if _defining and name not in OWN_FLAGS[_defining[-1]]:
    OWN_FLAGS[_defining[-1]].append(name)
  if name in FLAGS:
    return
  if kind == 'enum':
    flags.DEFINE_enum(name, default, kwargs.pop('enum_values'), help_text, **kwargs)
  else:
    getattr(flags, f'DEFINE_{kind}')(name, default, help_text, **kwargs)


def _define_overwrite():
  _define('bool', 'overwrite', False, 'Replace what is there: the SavedModel in --export_dir '
          '(export), a result of more episodes (evaluate).')


def define_train_flags() -> None:
  _define('bool', 'describe', False, 'Print the network of these flags and its parameter '
          'counts per group and variable, then exit (no --savedir needed).')


def define_export_flags() -> None:
  _define('enum', 'mode', 'savedmodel',
          'savedmodel: adapt-and-predict SavedModel; visualize: the reference dump of features '
          'per inner step, plus plots when the plots extra is installed.',
          enum_values=['savedmodel', 'visualize'])
  _define('string', 'export_dir', None,
          'Output folder (default <savedir>/export, or <savedir>/visualization).')
  _define_overwrite()
  _define('string', 'checkpoint', None, 'Checkpoint path (default: the latest of the run).')


def define_evaluate_flags() -> None:
  _define('string', 'split', 'test', 'Split to evaluate on (train, val or test).')
  _define('enum', 'attack', '', 'pgd: also score the query under a white-box PGD attack on '
          'the adapted model (writes eval_<split>_pgd_<norm>.json).', enum_values=['', 'pgd'])
  _define('string', 'attack_norm', 'linf', 'Norm of the attack ball: linf, l2 or l1.')
  _define('string', 'attack_eps', '0.03', 'Radii of the attack ball, comma-separated (pixels '
          'in [0, 1]).')
  _define('integer', 'attack_steps', 10, 'PGD steps.')
  _define('float', 'attack_step_size', 0.0, 'PGD step size; 0: 2.5 * eps / steps.')
  _define('bool', 'attack_random_start', False, 'Start PGD at a random point of the ball.')
  _define('float', 'attack_l1_sparsity', 0.01, 'Fraction of coordinates an L1 step moves (at '
          "least the step's L1 length: a pixel moves by at most 1).")
  _define('string', 'checkpoint', None, 'Checkpoint path (default: the latest of the run).')
  _define('integer', 'episode_seed', None, "Seed of the test episodes and noise (default: the "
          "run's --seed): give two runs of different seeds the same one to score them on the "
          'same episodes; another than the run\'s writes eval_<split>_seed<S>.json.')
  _define_overwrite()


DEFINE = {'train': define_train_flags, 'evaluate': define_evaluate_flags,
          'export': define_export_flags}


def define(program: str) -> None:
  """Defines `program`'s own flags (once per process) and records them in OWN_FLAGS."""
  _defining.append(program)
  try:
    DEFINE[program]()
  finally:
    _defining.pop()
