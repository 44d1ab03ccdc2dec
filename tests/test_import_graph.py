"""The package's import graph: no cycle, no upward import, no import hidden inside a function.

Read from the source with `ast` (nothing is imported), so it also sees imports that only run when
a function is called. ARCHITECTURE.md draws the layers that `LAYERS` encodes.

  python -m pytest tests/test_import_graph.py -q     # the check
  python tests/test_import_graph.py                  # the layers, the edges that break them, cycles
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "helpsteer_jax"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Longest matching prefix wins (the package's own __init__ matches only itself). A module may
# import its own layer or a lower one.
LAYERS: dict[str, int] = {
    PACKAGE: 0, f"{PACKAGE}.data": 0, f"{PACKAGE}.losses": 0, f"{PACKAGE}.sharding": 0,
    f"{PACKAGE}.distributed": 0, f"{PACKAGE}.hardware": 0,
    f"{PACKAGE}.models": 1,
    f"{PACKAGE}.training": 2,
    f"{PACKAGE}.runs": 3, f"{PACKAGE}.model_card": 3,
    f"{PACKAGE}.rlhf": 4, f"{PACKAGE}.evaluation": 4,
    f"{PACKAGE}.train": 5, f"{PACKAGE}.rlhf.train": 5, f"{PACKAGE}.score": 5,
    f"{PACKAGE}.evaluate": 5, f"{PACKAGE}.export": 5, f"{PACKAGE}.expo": 5,
    f"{PACKAGE}.iterative": 5,
}

# Function-local imports of the package's own modules that are allowed, with the reason. None is
# needed: every one so far existed to hide a cycle or an upward import.
ALLOWED_LOCAL: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
  parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def all_modules() -> dict[str, Path]:
  return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _targets(node: ast.AST, here: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
  """The package modules an import statement loads (a `from P import x` loads P.x if a module)."""
  if isinstance(node, ast.Import):
    return [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
  assert isinstance(node, ast.ImportFrom)
  base = node.module or ""
  if node.level:  # relative: resolve against this module's package
    pkg = here.split(".") if is_package else here.split(".")[:-1]
    pkg = pkg[:len(pkg) - (node.level - 1)]
    base = ".".join(pkg + ([base] if base else []))
  if base.split(".")[0] != PACKAGE:
    return []
  out = []
  for alias in node.names:
    sub = f"{base}.{alias.name}"
    out.append(sub if sub in modules else base)
  return out


def imports(modules: dict[str, Path]) -> list[tuple[str, str, bool]]:
  """(importer, imported, inside a function?) for every import of a package module."""
  edges = []
  for name, path in modules.items():
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, local: bool) -> None:
      for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
          for target in _targets(child, name, is_package, modules):
            if target != name:
              edges.append((name, target, local))
        visit(child, local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                 ast.Lambda)))

    visit(tree, False)
  return edges


def layer(module: str) -> int | None:
  best = None
  for prefix, level in LAYERS.items():
    if module == prefix or (prefix != PACKAGE and module.startswith(prefix + ".")):
      if best is None or len(prefix) > len(best[0]):
        best = (prefix, level)
  return None if best is None else best[1]


def cycles(edges: list[tuple[str, str, bool]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
  graph: dict[str, set[str]] = {}
  for a, b, _ in edges:
    graph.setdefault(a, set()).add(b)
    graph.setdefault(b, set())
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  stack: list[str] = []
  on_stack: set[str] = set()
  found: list[list[str]] = []

  def connect(v: str) -> None:
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        connect(w)
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
        found.append(sorted(component))

  sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
  for v in sorted(graph):
    if v not in index:
      connect(v)
  return found


def _edges():
  modules = all_modules()
  return modules, imports(modules)


def test_every_module_has_a_layer():
  modules, _ = _edges()
  assert [m for m in modules if layer(m) is None] == [], "place these modules in LAYERS"


def test_no_import_cycle():
  _, edges = _edges()
  assert cycles(edges) == []


def test_no_upward_import():
  _, edges = _edges()
  upward = sorted({(a, b) for a, b, _ in edges
                   if layer(a) is not None and layer(b) is not None and layer(b) > layer(a)})
  assert upward == [], "a lower layer imports a higher one (see ARCHITECTURE.md)"


def test_no_function_local_import_of_the_package():
  _, edges = _edges()
  local = sorted({(a, b) for a, b, is_local in edges if is_local} - set(ALLOWED_LOCAL))
  assert local == [], "import these at module level (a cycle or an upward import is the bug)"


def test_the_checker_sees_a_cycle_and_a_hidden_import():
  # The checker itself: a two-module cycle through a function-local import is found.
  edges = [("p.a", "p.b", False), ("p.b", "p.a", True), ("p.b", "p.c", False)]
  assert cycles(edges) == [["p.a", "p.b"]]
  src = "def f():\n  from helpsteer_jax.models import convert\n"
  tree = ast.parse(src)
  fn = tree.body[0]
  assert isinstance(fn.body[0], ast.ImportFrom)
  modules = all_modules()
  assert _targets(fn.body[0], f"{PACKAGE}.x", False, modules) == [f"{PACKAGE}.models.convert"]


def main() -> None:
  modules, edges = _edges()
  by_layer: dict[int | None, list[str]] = {}
  for m in modules:
    by_layer.setdefault(layer(m), []).append(m)
  for level in sorted(by_layer, key=lambda x: -1 if x is None else x):
    print(f"layer {level}: {' '.join(by_layer[level])}")
  local = sorted({(a, b) for a, b, is_local in edges if is_local})
  upward = sorted({(a, b) for a, b, _ in edges
                   if layer(a) is not None and layer(b) is not None and layer(b) > layer(a)})
  found = cycles(edges)
  print(f"\n{len(modules)} modules, {len({(a, b) for a, b, _ in edges})} import edges")
  print(f"cycles: {len(found)}")
  for c in found:
    print("  " + " <-> ".join(c))
  print(f"upward imports: {len(upward)}")
  for a, b in upward:
    print(f"  {a} (layer {layer(a)}) -> {b} (layer {layer(b)})")
  print(f"function-local imports of {PACKAGE}: {len(local)}")
  for a, b in local:
    print(f"  {a} -> {b}" + (f"  (allowed: {ALLOWED_LOCAL[(a, b)]})" if (a, b) in ALLOWED_LOCAL
                               else ""))
  sys.exit(1 if found or upward or set(local) - set(ALLOWED_LOCAL) else 0)


if __name__ == "__main__":
  main()
