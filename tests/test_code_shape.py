"""The package stays readable in pieces: no module over 300 lines, no function over 60 (a
module or function that grows past them is split where it holds two ideas)."""

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
