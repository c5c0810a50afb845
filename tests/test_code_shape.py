"""The package stays readable in pieces: no module over 300 lines, no function over 60 (a
module or function that grows past them is split where it holds two ideas), imports that go
one way between its subpackages (docs/code-map.md), and public functions whose type hints say
what they take and give."""

import ast
import glob
import os

import helpers

MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
MODULES = sorted(glob.glob(os.path.join(helpers.REPO, 'metadrop_tf', '**', '*.py'),
                           recursive=True))


def test_no_module_is_over_300_lines():
  assert len(MODULES) > 40
  long = {os.path.relpath(path, helpers.REPO): n for path in MODULES
          if (n := len(open(path).read().splitlines())) > MAX_MODULE_LINES}
  assert not long, long


def test_no_function_is_over_60_lines():
  long = []
  for path in MODULES:
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        lines = node.end_lineno - node.lineno + 1
        if lines > MAX_FUNCTION_LINES:
          long.append(f'{os.path.relpath(path, helpers.REPO)}:{node.lineno} {node.name} {lines}')
  assert not long, long


def _public_functions(tree):
  """(name, node) of the module's public functions and of the public methods of its public
  classes (nested functions are a function's own business)."""
  for node in tree.body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      yield node.name, node
    elif isinstance(node, ast.ClassDef) and not node.name.startswith('_'):
      for member in node.body:
        if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)):
          yield f'{node.name}.{member.name}', member


def test_public_functions_have_type_hints():
  missing, seen = [], 0
  for path in MODULES:
    for name, node in _public_functions(ast.parse(open(path).read())):
      if node.name.startswith('_'):
        continue
      seen += 1
      args = node.args
      params = [a for a in args.posonlyargs + args.args + args.kwonlyargs
                if a.arg not in ('self', 'cls')] + [a for a in (args.vararg, args.kwarg) if a]
      bare = [a.arg for a in params if a.annotation is None]
      if bare or node.returns is None:
        missing.append(f'{os.path.relpath(path, helpers.REPO)}:{node.lineno} {name} '
                       f'{bare}{"" if node.returns else " return"}')
  assert seen > 300 and not missing, missing


# The root, then the subpackages in the order of the flow: each imports only from its own
# package, the root and the packages before it.
LAYERS = ('', 'episodes', 'nets', 'learners', 'runtime', 'evaluation', 'train', 'export', 'cli')
ROOT_WITHOUT_TF = ('config', 'config_checks', 'components', 'migration', 'errors', 'files')


def _layer(dotted: str) -> str:
  """'metadrop_tf.nets.model' -> 'nets'; a module of the root -> ''."""
  parts = dotted.split('.')
  return parts[1] if len(parts) > 1 and parts[1] in LAYERS else ''


def _imports(path):
  """(line, module imported from metadrop_tf) of every import in the file, nested ones too."""
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('metadrop_tf'):
      for alias in node.names:
        yield node.lineno, f'{node.module}.{alias.name}'
    elif isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name


def test_imports_go_one_way_between_the_subpackages():
  assert set(LAYERS[1:]) == {os.path.basename(os.path.dirname(p)) for p in MODULES} - {
      'metadrop_tf'}
  upward, seen = [], 0
  for path in MODULES:
    own = _layer(os.path.relpath(path, helpers.REPO).replace(os.sep, '.'))
    for line, module in _imports(path):
      if not module.startswith('metadrop_tf'):
        continue
      seen += 1
      if LAYERS.index(_layer(module)) > LAYERS.index(own):
        upward.append(f'{os.path.relpath(path, helpers.REPO)}:{line} imports {module}')
  assert seen > 100 and not upward, upward


def test_the_settings_import_no_tensorflow():
  for name in ROOT_WITHOUT_TF:
    imported = [m for _, m in _imports(os.path.join(helpers.REPO, 'metadrop_tf', f'{name}.py'))]
    assert not [m for m in imported if m.split('.')[0] in ('tensorflow', 'keras')], name
    assert all(_layer(m) == '' for m in imported if m.startswith('metadrop_tf')), name


def test_the_code_map_names_every_module_under_its_package():
  text = open(os.path.join(helpers.REPO, 'docs', 'code-map.md')).read()
  sections = {}  # package folder -> the code map's lines under it
  for line in text.split('```')[1].splitlines():
    if line.startswith('metadrop_tf/'):
      folder = line.split()[0]
      sections[folder] = ''
    elif line.startswith('  ') and sections:
      sections[folder] += line
  for path in MODULES:
    name = os.path.basename(path)
    if name == '__init__.py':
      continue
    folder = os.path.relpath(os.path.dirname(path), helpers.REPO) + '/'
    assert folder in sections, folder
    assert name in sections[folder], (folder, name)
