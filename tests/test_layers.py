"""Imports go down the layers: no cycle between the package's parts nor between its files,
client and serving meet only in ``contract`` and ``core``; no file over 400 lines, no
function over 60.

Every ``import`` / ``from ... import`` of the package is read with ``ast`` (function-level
imports included), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "streammuse"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def _part(module: str) -> str:
    """``streammuse.client.sim`` -> ``client``; ``streammuse.contract`` -> ``contract``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _module(path: Path) -> str:
    """``.../streammuse/serving/app.py`` -> ``streammuse.serving.app`` (a package: its ``__init__``)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, modules: set[str]) -> list[str]:
    """The package's modules an import statement loads: ``from a.b import c`` is the file
    ``a.b.c`` when there is one, else ``a.b`` (a name defined in it)."""
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return []


def _file_imports() -> dict[str, set[str]]:
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            graph[module].update(m for m in _imported(node, set(files)) if m in files and m != module)
    return graph


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("streammuse.") and _part(name) != _part(module):
                    graph[_part(module)].add(_part(name))
    return graph


def _first_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (its nodes in order, the first repeated at the end), or None."""
    seen, on_path = set(), []

    def visit(node: str) -> list[str] | None:
        if node in on_path:
            return on_path[on_path.index(node):] + [node]
        if node in seen:
            return None
        on_path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if cycle := visit(nxt):
                return cycle
        on_path.pop()
        seen.add(node)
        return None

    return next((c for c in map(visit, sorted(graph)) if c), None)


def test_no_import_cycle_between_parts():
    cycle = _first_cycle(_imports())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_cycle_between_files():
    # A function-level import hides a circle from Python, not from the reader: every
    # import counts.
    cycle = _first_cycle(_file_imports())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert _first_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _first_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_client_and_serving_meet_only_in_contract_and_core():
    graph = _imports()
    assert "serving" not in graph["client"]
    assert "client" not in graph["serving"]
    assert graph["core"] <= {"contract", "model", "errors", "datasets"}
    assert graph["contract"] <= {"datasets", "errors"}


def test_files_and_functions_stay_small():
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            too_long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.name}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, too_long
