"""Imports go down the layers: no cycle between the package's parts, client and serving
meet only in ``contract`` and ``core``; no file over 400 lines, no function over 60.

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


def test_no_import_cycle_between_parts():
    graph = _imports()
    seen, on_path = set(), []

    def visit(node: str) -> None:
        if node in on_path:
            raise AssertionError("import cycle: " + " -> ".join(on_path[on_path.index(node):] + [node]))
        if node in seen:
            return
        on_path.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        on_path.pop()
        seen.add(node)

    for node in sorted(graph):
        visit(node)


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
