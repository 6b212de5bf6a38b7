"""condainer.fs stands on its own: it imports only condainer.errors from the rest of condainer, and
its modules import each other without a cycle (imports inside functions included)."""

from __future__ import annotations

import pathlib

import condainer.fs
from tests.helpers.imports import assert_no_cycle, imports, modules

FS = pathlib.Path(condainer.fs.__file__).parent


def test_fs_imports_nothing_of_condainer_but_errors():
    known = modules(FS)
    outside = {
        f"{name}: {imported}"
        for name, path in known.items()
        for imported in imports(path, known)
        if imported.split(".")[0] == "condainer" and imported != "condainer.errors"
        and not (imported + ".").startswith("condainer.fs.")
    }
    assert not outside, sorted(outside)


def test_fs_modules_import_each_other_without_a_cycle():
    known = modules(FS)
    assert_no_cycle({name: {i for i in imports(path, known) if i in known and i != name}
                     for name, path in known.items()})
