"""No import cycles among tickpipe's packages.

The graph is built from the source with :mod:`ast`: every ``import`` and
``from ... import`` anywhere in a module (at the top, in a function, under
``TYPE_CHECKING``), intra-project only. ``from pkg import name`` is an edge
to ``pkg.name`` when that is a module, else to ``pkg`` (as import-linter
reads it). A cycle is a strongly connected component of more than one
module, or a module importing itself.

A child that needs something of its parent declares a small ``Protocol``
beside itself and the parent passes an object that fits (STYLE.md), so no
cycle is needed anywhere, and any cycle fails the test.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tickpipe", "producer", "consumers", "api", "simulator")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The project modules ``name`` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _known(alias.name, modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                yield from _known(target if target in modules else base, modules)


def _known(target: str, modules: dict[str, Path]) -> Iterator[str]:
    """The module itself if it is the project's, else the nearest enclosing package that is."""
    while target:
        if target in modules:
            yield target
            return
        target = target.rpartition(".")[0]


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: set(imports_of(name, path, modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with a cycle in them (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in sorted(graph.get(node, ())):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    assert "tickpipe.feeds" in graph["tickpipe.names"]  # from tickpipe.feeds import STOCK
    assert "simulator.wire" in graph["simulator.session"]  # from simulator import wire
    assert "tickpipe.feeds.spec" in graph["tickpipe.feeds.stock"]
    assert graph["tickpipe.feeds.spec"] == set(), "the feed spec imports nothing of the project"


def test_cycles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}
    assert sorted(map(sorted, cycles(graph))) == [["a", "b", "c"], ["d"]]


def test_no_import_cycles() -> None:
    found = [sorted(component) for component in cycles(import_graph())]
    assert not found, f"expected no import cycles, found {found}"
