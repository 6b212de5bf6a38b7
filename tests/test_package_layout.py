"""The package's layout (README, Architecture): no import cycle anywhere in condainer/ (imports inside
functions included), and no part imports a part above it: cli/ > build/ > node/ > backends/ >
project/ > fs/. The root's modules (the two programs and what every part shares) are left out as
importers: entry.py dispatches to cli/ and node/ by design."""

from __future__ import annotations

import pathlib

import condainer
from tests.helpers.imports import assert_no_cycle, imports, modules

ROOT = pathlib.Path(condainer.__file__).parent
PARTS = ("cli", "build", "node", "backends", "project", "fs")  # from the top down


def _part(module: str) -> str | None:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 2 and pieces[1] in PARTS else None


def test_no_import_cycle_in_condainer():
    known = modules(ROOT)
    assert_no_cycle({name: {i for i in imports(path, known) if i in known and i != name}
                     for name, path in known.items()})


def test_no_part_imports_a_part_above_it():
    known = modules(ROOT)
    upward = []
    for name, path in known.items():
        mine = _part(name)
        if mine is None:
            continue
        for imported in imports(path, known):
            theirs = _part(imported)
            if theirs is not None and PARTS.index(theirs) < PARTS.index(mine):
                upward.append(f"{name} -> {imported}")
    assert not upward, sorted(upward)
