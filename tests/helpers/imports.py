"""The import graph of a package, read from its source with ast (imports inside functions
included), for the tests of the package's layout (tests/test_package_layout.py, tests/write/test_fs_layer.py)."""

from __future__ import annotations

import ast
import pathlib


def modules(package: pathlib.Path) -> dict[str, pathlib.Path]:
    """Dotted name -> file of every module under PACKAGE (a directory with __init__.py), named from
    its top-level package (condainer/fs gives condainer.fs.*)."""
    top = package
    while (top.parent / "__init__.py").exists():
        top = top.parent
    found = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(top.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: pathlib.Path, known: dict[str, pathlib.Path]) -> set[str]:
    """Every module PATH imports: ``from P import m`` imports the module P.m when KNOWN has it (its
    package P is only its parent), else P."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                names.add(sub if sub in known else node.module)
    return names


def assert_no_cycle(graph: dict[str, set[str]]) -> None:
    """Fail naming the first import cycle of GRAPH (module -> the modules of GRAPH it imports)."""
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(name):], name]))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
