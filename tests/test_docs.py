"""The docs: results tables equal what docs/tables.py generates from runs/; a short README."""

import importlib.util
import json
import os
import shutil

import pytest

from helpers import REPO


def _tables():
  spec = importlib.util.spec_from_file_location('tables', os.path.join(REPO, 'docs', 'tables.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_every_results_table_equals_its_regeneration():
  assert _tables().main(['--check']) == 0


def test_every_table_is_used_and_every_marker_is_known():
  tables = _tables()
  text = ''.join(open(path).read() for path in tables.DOCS)
  for name in tables.TABLES:
    assert f'<!-- table:{name} -->' in text, name
  for path in tables.DOCS:
    tables.render(open(path).read(), path)  # KeyError on an unknown name


def test_a_changed_result_makes_the_check_fail(tmp_path, monkeypatch, capsys):
  tables = _tables()
  runs = tmp_path / 'runs'
  shutil.copytree(os.path.join(REPO, 'runs', 'omniglot_1shot_maml'), runs / 'omniglot_1shot_maml',
                  ignore=shutil.ignore_patterns('ckpt', 'tb'))
  path = runs / 'omniglot_1shot_maml' / 'eval_test.json'
  result = json.loads(path.read_text())
  doc = tmp_path / 'page.md'
  doc.write_text('<!-- table:table1 -->\n<!-- /table:table1 -->\n')
  monkeypatch.setattr(tables, 'RUNS', str(runs))
  monkeypatch.setattr(tables, 'DOCS', [str(doc)])
  monkeypatch.setattr(tables, 'REPO', str(tmp_path))
  assert tables.main([]) == 0
  assert f"{result['accuracy']:.2f} ± {result['ci95']:.2f}" in doc.read_text()
  assert tables.main(['--check']) == 0
  result['accuracy'] += 1
  path.write_text(json.dumps(result))
  assert tables.main(['--check']) == 1
  assert 'page.md' in capsys.readouterr().err


def test_unknown_table_names_the_file():
  with pytest.raises(KeyError, match='page.md'):
    _tables().render('<!-- table:nope -->\n<!-- /table:nope -->', 'page.md')


def test_readme_is_a_front_page():
  with open(os.path.join(REPO, 'README.md')) as f:
    assert len(f.read().splitlines()) <= 200
