"""The import rules of `common/` (its `__init__.py` says them): imports point down only.

Every import statement of every module is read (those inside functions too), so a lazy import
cannot cross a boundary unseen.
"""
import ast
import os

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
ALGORITHMS = ('dreamer', 'dreamer4', 'planet', 'world_models_ha')

# Part of common -> the parts of common its modules may import (each may import itself).
MAY_IMPORT = {
    'agent': set(),
    'nn': set(),
    'replay': {'nn'},
    'planning': {'nn'},
    'envs': set(),
    'run': {'agent', 'nn', 'replay', 'planning', 'envs'},
}


def _modules(package):
  for directory, _, names in os.walk(os.path.join(ROOT, package)):
    for name in sorted(names):
      if name.endswith('.py'):
        yield os.path.relpath(os.path.join(directory, name), ROOT)


def _imports(path):
  """`(line, dotted name)` of everything `path` imports; `from a import b` gives `a.b`."""
  with open(os.path.join(ROOT, path)) as file:
    tree = ast.parse(file.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom):
      assert node.level == 0, f'{path}:{node.lineno}: relative import; write it absolute'
      for alias in node.names:
        yield node.lineno, f'{node.module}.{alias.name}'


def _part(path):
  """The part of common a file belongs to: `common/nn/rssm.py` -> 'nn', `common/agent.py` ->
  'agent' (common/__init__.py holds only a docstring)."""
  parts = path.split(os.sep)
  return parts[1] if len(parts) > 2 else parts[1][:-len('.py')]


def test_every_part_of_common_has_a_rule():
  parts = {_part(path) for path in _modules('common')} - {'__init__'}
  assert parts == set(MAY_IMPORT)


@pytest.mark.parametrize('part', sorted(MAY_IMPORT))
def test_common_imports_point_down(part):
  allowed = MAY_IMPORT[part] | {part}
  crossings = []
  for path in _modules('common'):
    if _part(path) != part:
      continue
    for line, name in _imports(path):
      names = name.split('.')
      if names[0] in ALGORITHMS or names[0] == 'experiments':
        crossings.append(f'{path}:{line} imports {name} (common knows no algorithm)')
      elif names[0] == 'common' and names[1] not in allowed:
        crossings.append(f'{path}:{line} imports {name}')
  assert not crossings, f'common/{part} may import {sorted(allowed)} of common:\n' + '\n'.join(
      crossings)


@pytest.mark.parametrize('algorithm', ALGORITHMS)
def test_algorithms_import_no_other_algorithm(algorithm):
  crossings = [f'{path}:{line} imports {name}'
               for path in _modules(algorithm) for line, name in _imports(path)
               if name.split('.')[0] in set(ALGORITHMS) - {algorithm} | {'experiments'}]
  assert not crossings, '\n'.join(crossings)


def test_each_package_docstring_states_its_rule():
  for part in MAY_IMPORT:
    init = os.path.join(ROOT, 'common', part, '__init__.py')
    if os.path.exists(init):
      with open(init) as file:
        docstring = ast.get_docstring(ast.parse(file.read()))
      assert docstring and 'May import:' in docstring, f'{init}: say what it may import'
