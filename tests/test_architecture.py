"""The package's shape, checked statically (ast, nothing imported): no import cycles between
gan_jax modules and no module reaching into another module's private names (issue 16).

Function-level imports count as much as top-level ones: hiding a cycle inside a function
only defers it. Run as a script to print the figures (modules, edges, cycles, reaches):

    python tests/test_architecture.py
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = 'gan_jax'
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def module_files(root: Path = ROOT) -> dict[str, Path]:
  """{dotted module name: file} of every .py file under the package ('gan_jax.models' for
  gan_jax/models/__init__.py)."""
  out = {}
  for path in sorted(root.rglob('*.py')):
    parts = list(path.relative_to(root.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
      parts.pop()
    out['.'.join(parts)] = path
  return out


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
  """The absolute module an ImportFrom names (resolving `from . import x`)."""
  if not node.level:
    return node.module or ''
  base = module.split('.') if is_package else module.split('.')[:-1]
  base = base[: len(base) - (node.level - 1)]
  return '.'.join(base + ([node.module] if node.module else []))


def imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str, int]]:
  """Every gan_jax module `module` imports, anywhere in the file (also inside functions).

  Returns:
    (imported module, the imported name or '' for a whole module, line) triples; `from
    gan_jax.x import y` gives (gan_jax.x.y, '', line) when y is a submodule, else
    (gan_jax.x, 'y', line).
  """
  tree = ast.parse(path.read_text(), str(path))
  is_package = path.name == '__init__.py'
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name in modules:
          out.append((alias.name, '', node.lineno))
    elif isinstance(node, ast.ImportFrom):
      source = _absolute(module, is_package, node)
      if source not in modules:
        continue
      for alias in node.names:
        sub = f'{source}.{alias.name}'
        if sub in modules:
          out.append((sub, '', node.lineno))
        else:
          out.append((source, alias.name, node.lineno))
  return out


def import_graph(modules: dict[str, Path] | None = None) -> dict[str, set[str]]:
  """{module: the gan_jax modules it imports by name}; a package's own `__init__` being run
  by the import of one of its submodules is not an edge."""
  modules = modules or module_files()
  return {
    m: {target for target, _, _ in imports(m, p, modules) if target != m}
    for m, p in modules.items()
  }


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components with more than one module (Tarjan), each sorted."""
  index, low, on_stack, stack, out = {}, {}, set(), [], []

  def visit(v: str) -> None:
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return sorted(out)


def _private(name: str) -> bool:
  return name.startswith('_') and not (name.startswith('__') and name.endswith('__'))


def private_reaches(modules: dict[str, Path] | None = None) -> list[str]:
  """Uses of another gan_jax module's private names: `from gan_jax.x import _y` and
  `alias._y` where `alias` is bound to a gan_jax module by an import in the file.

  Returns:
    'file:line: module._name' strings, sorted.
  """
  modules = modules or module_files()
  out = []
  for module, path in modules.items():
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == '__init__.py'
    where = module.replace('.', '/') + ('/__init__.py' if is_package else '.py')
    aliases: dict[str, str] = {}  # local name -> gan_jax module
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        for alias in node.names:
          if alias.name in modules:
            aliases[alias.asname or alias.name] = alias.name
      elif isinstance(node, ast.ImportFrom):
        source = _absolute(module, is_package, node)
        if source not in modules:
          continue
        for alias in node.names:
          sub = f'{source}.{alias.name}'
          if sub in modules:
            aliases[alias.asname or alias.name] = sub
          elif _private(alias.name) and source != module:
            out.append(f'{where}:{node.lineno}: {source}.{alias.name}')
    for node in ast.walk(tree):
      if isinstance(node, ast.Attribute) and _private(node.attr):
        target = _dotted(node.value)
        owner = aliases.get(target) if target else None
        if owner is None and target in modules:
          owner = target
        if owner is not None and owner != module:
          out.append(f'{where}:{node.lineno}: {owner}.{node.attr}')
  return sorted(out)


def _dotted(node: ast.expr) -> str | None:
  """'a.b.c' for a chain of names and attributes, else None."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if not isinstance(node, ast.Name):
    return None
  return '.'.join([node.id, *reversed(parts)])


def test_the_analysis_sees_function_level_imports_and_private_reaches(tmp_path):
  """The checker itself: a cycle hidden in a function and a reach through an alias count."""
  pkg = tmp_path / PACKAGE
  (pkg / 'sub').mkdir(parents=True)
  (pkg / '__init__.py').write_text('')
  (pkg / 'sub' / '__init__.py').write_text('from gan_jax.sub.b import B\n')
  (pkg / 'a.py').write_text('from gan_jax.sub import b as b_lib\nX = b_lib._helper()\n')
  (pkg / 'sub' / 'b.py').write_text(
    'def f():\n  from gan_jax import a\n  return a\n\nfrom ..c import _C\n'
  )
  (pkg / 'c.py').write_text('_C = 1\n')
  modules = module_files(pkg)
  assert sorted(modules) == ['gan_jax', 'gan_jax.a', 'gan_jax.c', 'gan_jax.sub', 'gan_jax.sub.b']
  graph = import_graph(modules)
  assert graph['gan_jax.sub.b'] == {'gan_jax.a', 'gan_jax.c'}
  assert import_cycles(graph) == [['gan_jax.a', 'gan_jax.sub.b']]
  reaches = private_reaches(modules)
  assert [r.split(': ')[1] for r in reaches] == ['gan_jax.sub.b._helper', 'gan_jax.c._C']


def test_no_import_cycles_between_gan_jax_modules():
  cycles = import_cycles(import_graph())
  assert not cycles, f'import cycles (function-level imports included): {cycles}'


def test_no_module_reaches_into_another_modules_private_names():
  reaches = private_reaches()
  assert not reaches, 'private names used across modules:\n' + '\n'.join(reaches)


def test_the_package_docstring_names_every_top_level_module():
  """gan_jax/__init__.py's map of modules lists each module and subpackage once."""
  doc = ast.get_docstring(ast.parse((ROOT / '__init__.py').read_text()))
  listed = [line.split()[0] for line in doc.splitlines() if line.startswith('  ') and
            not line.startswith('   ')]
  top = sorted({m.split('.')[1] for m in module_files() if m.count('.') >= 1})
  assert sorted(listed) == top, f'missing: {sorted(set(top) - set(listed))}, ' \
    f'unknown: {sorted(set(listed) - set(top))}'
  assert len(listed) == len(set(listed))



# The layers of the package, bottom first (gan_jax/__init__.py's map): a module may import
# its own layer and the ones below, never one above.
LAYERS = (
  ('errors', 'cache_dir'),
  ('core', 'models', 'data', 'metrics'),
  ('config', 'config_files'),
  ('training',),
  ('sweep', 'latent', 'translation', 'export'),
  ('cli',),
)


def _layer(module: str) -> int:
  top = module.split('.')[1] if module.count('.') else ''
  for i, names in enumerate(LAYERS):
    if top in names:
      return i
  return -1


def test_every_top_level_module_has_a_layer():
  tops = {m.split('.')[1] for m in module_files() if m.count('.') >= 1}
  assert sorted(t for t in tops if _layer(f'gan_jax.{t}') < 0) == []


def test_imports_point_down_the_layers():
  """cli -> applications -> training -> config -> ingredients -> foundations: nothing imports
  a layer above its own (the analysis sees function-level imports too)."""
  graph = import_graph()
  upward = sorted(
    f'{a} -> {b}'
    for a, targets in graph.items()
    for b in targets
    if a != 'gan_jax' and b != 'gan_jax' and _layer(b) > _layer(a)
  )
  assert upward == []


def test_the_public_api_at_the_top_resolves_and_is_documented():
  """Each name of `gan_jax.__all__` loads from the module the map names and is listed in the
  package docstring; unknown names are an AttributeError."""
  import gan_jax  # pylint: disable=g-import-not-at-top

  doc = gan_jax.__doc__
  for name in gan_jax.__all__:
    value = getattr(gan_jax, name)
    assert callable(value) and value.__doc__, name
    assert f'gan_jax.{name}' in doc, name
  try:
    gan_jax.no_such_name  # noqa: B018
  except AttributeError:
    pass
  else:
    raise AssertionError('gan_jax.no_such_name resolved')

if __name__ == '__main__':
  graph = import_graph()
  cycles = import_cycles(graph)
  reaches = private_reaches()
  print(f'{len(graph)} modules, {sum(map(len, graph.values()))} import edges')
  print(f'{len(cycles)} import cycles (strongly connected components):')
  for c in cycles:
    print('  ' + ' <-> '.join(c))
  print(f'{len(reaches)} cross-module private reaches:')
  for r in reaches:
    print('  ' + r)
