"""condainer.fs stands on its own: it imports only condainer.errors from the rest of condainer, and
its modules import each other without a cycle (imports inside functions included)."""

from __future__ import annotations

import ast
import pathlib

import condainer.fs

FS = pathlib.Path(condainer.fs.__file__).parent


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in FS.rglob("*.py"):
        parts = path.relative_to(FS.parent.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
    """Every module PATH imports: ``from P import m`` imports the module P.m when there is one (its
    package P is only its parent), else P."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                names.add(sub if sub in modules else node.module)
    return names


def test_fs_imports_nothing_of_condainer_but_errors():
    modules = _modules()
    outside = {
        f"{name}: {imported}"
        for name, path in modules.items()
        for imported in _imports(path, modules)
        if imported.split(".")[0] == "condainer" and imported != "condainer.errors"
        and not (imported + ".").startswith("condainer.fs.")
    }
    assert not outside, sorted(outside)


def test_fs_modules_import_each_other_without_a_cycle():
    modules = _modules()
    graph = {
        name: {imported for imported in _imports(path, modules) if imported in modules and imported != name}
        for name, path in modules.items()
    }
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = trail[trail.index(name) :] + [name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
