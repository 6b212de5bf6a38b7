"""The package's layout (README, Architecture): no import cycle anywhere in condainer/ (imports inside
functions included), and no part imports a part above it: cli/ > build/ > node/ > backends/ >
project/ > fs/. The root's modules (the two programs and what every part shares) are left out as
importers: entry.py dispatches to cli/ and node/ by design."""

from __future__ import annotations

import ast
import pathlib

import condainer

ROOT = pathlib.Path(condainer.__file__).parent
PARTS = ("cli", "build", "node", "backends", "project", "fs")  # from the top down


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
    """The modules of condainer that PATH imports (``from P import m``: P.m when it is a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                names.add(sub if sub in modules else node.module)
    return {name for name in names if name in modules}


def _part(module: str) -> str | None:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 2 and pieces[1] in PARTS else None


def test_no_import_cycle_in_condainer():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
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


def test_no_part_imports_a_part_above_it():
    modules = _modules()
    upward = []
    for name, path in modules.items():
        mine = _part(name)
        if mine is None:
            continue
        for imported in _imports(path, modules):
            theirs = _part(imported)
            if theirs is not None and PARTS.index(theirs) < PARTS.index(mine):
                upward.append(f"{name} -> {imported}")
    assert not upward, sorted(upward)
