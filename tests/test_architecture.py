"""The layers of ``aiida_qrnn`` (see docs/architecture.md), checked on the source: no import cycle between its
sub-packages, and ``core`` free of AiiDA. Read with ``ast``, so nothing is imported and lazy imports count too."""

from __future__ import annotations

import ast
import pathlib

import aiida_qrnn

PACKAGE = pathlib.Path(aiida_qrnn.__file__).parent
def imported_modules(path: pathlib.Path) -> set[str]:
    """Dotted names of every module ``path`` imports, anywhere in it (relative imports resolved)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts = parts[:-1]
    package = parts if path.name == '__init__.py' else parts[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = '.'.join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f'{module}.{alias.name}' for alias in node.names)
    return names


def subpackage(dotted: str) -> str | None:
    """``core`` for ``aiida_qrnn.core.md.runner``; None outside ``aiida_qrnn``."""
    parts = dotted.split('.')
    return parts[1] if parts[0] == 'aiida_qrnn' and len(parts) > 1 else None


def package_graph() -> dict[str, set[str]]:
    """Edges between sub-packages (top-level modules count as their own)."""
    packages = {path.name.removesuffix('.py') for path in PACKAGE.iterdir() if path.name != '__init__.py'}
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob('*.py')):
        if path.parent == PACKAGE and path.name == '__init__.py':
            continue
        source = path.relative_to(PACKAGE).parts[0].removesuffix('.py')
        graph.setdefault(source, set())
        for name in imported_modules(path):
            target = subpackage(name)
            if target is None or target == source or target not in packages:
                continue
            graph[source].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one package (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_package_cycle():
    graph = package_graph()
    assert {'core', 'jobs', 'data', 'calculations', 'parsers', 'workchains', 'cli'} <= set(graph)
    assert cycles(graph) == [], {package: sorted(targets) for package, targets in graph.items()}


def test_layers_point_down():
    graph = package_graph()
    assert graph['core'] == set()
    assert graph['jobs'] == {'core'}
    assert 'cli' not in graph['calculations'] | graph['parsers'] | graph['workchains']


def test_core_imports_no_aiida():
    offenders = {
        path.relative_to(PACKAGE).as_posix(): sorted(name for name in imported_modules(path)
                                                      if name.split('.')[0] == 'aiida')
        for path in (PACKAGE / 'core').rglob('*.py')
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_cycle_finder_finds_a_cycle():
    """The check above can fail: a two-package loop and a three-package loop are found, a chain is not."""
    assert cycles({'a': {'b'}, 'b': {'a'}, 'c': {'a'}}) == [['a', 'b']]
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == [['a', 'b', 'c']]
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': set()}) == []
