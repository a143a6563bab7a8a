"""The package's shape: no import circle between its modules, no implementation in `__init__.py`.

Both are read from the source (ast), without importing anything.
"""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "cv_jax"


def _modules() -> dict[str, pathlib.Path]:
  mods = {}
  for path in PACKAGE.rglob("*.py"):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
      parts = parts[:-1]
    mods[".".join(parts)] = path
  return mods


def _imports(tree: ast.AST) -> set[str]:
  """Every module named by an import anywhere in the file (function bodies included), except
  under `if TYPE_CHECKING:`; `from a import b` names both `a` and `a.b`."""
  names: set[str] = set()

  def visit(node):
    for child in ast.iter_child_nodes(node):
      if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
        continue
      if isinstance(child, ast.Import):
        names.update(a.name for a in child.names)
      elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
        names.add(child.module)
        names.update(f"{child.module}.{a.name}" for a in child.names)
      visit(child)

  visit(tree)
  return names


def _graph() -> dict[str, set[str]]:
  """module -> the cv_jax modules that importing it runs (a module's parent packages run first)."""
  mods = _modules()
  graph = {}
  for name, path in mods.items():
    deps = set()
    for target in _imports(ast.parse(path.read_text())):
      while target and target not in mods:
        target = target.rpartition(".")[0]
      parts = target.split(".") if target else []
      for i in range(1, len(parts) + 1):
        dep = ".".join(parts[:i])
        if dep != name and not name.startswith(dep + "."):
          deps.add(dep)
    graph[name] = deps
  return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan, iterative)."""
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  stack: list[str] = []
  on_stack: set[str] = set()
  found = []
  for root in graph:
    if root in index:
      continue
    work = [(root, iter(sorted(graph[root])))]
    index[root] = low[root] = len(index)
    stack.append(root)
    on_stack.add(root)
    while work:
      v, it = work[-1]
      w = next(it, None)
      if w is not None:
        if w not in index:
          index[w] = low[w] = len(index)
          stack.append(w)
          on_stack.add(w)
          work.append((w, iter(sorted(graph[w]))))
        elif w in on_stack:
          low[v] = min(low[v], index[w])
        continue
      work.pop()
      if work:
        low[work[-1][0]] = min(low[work[-1][0]], low[v])
      if low[v] == index[v]:
        comp = []
        while True:
          w = stack.pop()
          on_stack.discard(w)
          comp.append(w)
          if w == v:
            break
        if len(comp) > 1:
          found.append(sorted(comp))
  return found


def test_cycle_finder_finds_a_planted_circle():
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
  assert _cycles(graph) == [["a", "b", "c"]]
  assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
  graph = _graph()
  assert "cv_jax.weights" in graph["cv_jax.models.model"]  # the graph sees real edges
  assert _cycles(graph) == []


def test_init_files_only_re_export():
  allowed = (ast.Import, ast.ImportFrom)
  for path in PACKAGE.rglob("__init__.py"):
    body = ast.parse(path.read_text()).body
    for i, node in enumerate(body):
      if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        continue  # the docstring
      if isinstance(node, allowed):
        continue
      if (isinstance(node, ast.Assign) and len(node.targets) == 1
          and isinstance(node.targets[0], ast.Name)
          and node.targets[0].id in ("__all__", "__version__")
          and isinstance(node.value, (ast.List, ast.Tuple, ast.Constant))):
        continue
      raise AssertionError(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: only a docstring, "
                           f"imports, __all__ and __version__ belong in an __init__.py")
