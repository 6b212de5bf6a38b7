"""requirements.txt may hold anything pip takes; the build installs it, condainer.lock records what
was installed (an index package's and a local archive's sha256, a checkout's commit id, a
directory's built wheel's sha256) and `cnd build --locked` installs exactly that again: twice the
same image, a moved branch still gives the locked commit, a changed directory is refused.

Everything is local and real: git repositories reached through git+file://, wheels, an sdist and
directories by path, a file:// index, real pip and real venvs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from . import pip_sources as src
from .conftest import cnd, mountpoint_of, set_config
from .test_lock import environ, image_of
from .test_project import one_line_error


def _digest(project: Path) -> str:
    return hashlib.sha256(image_of(project).read_bytes()).hexdigest()


def _values(project: Path, *modules: str) -> list[str]:
    code = "; ".join(f"import {m}; print({m}.V)" for m in modules)
    r = cnd("exec", "--", "python", "-c", code, cwd=project, env=environ())
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@pytest.fixture
def sources(tmp_path) -> dict[str, object]:
    root = tmp_path / "sources"
    commits = {name: src.git_project(root / name, name) for name in ("vcstag", "vcsbranch", "vcscommit")}
    index = src.simple_index(root / "index", [src.wheel(root / "index-files", "idxpkg", v, v) for v in ("1.0", "2.0")])
    return {
        "root": root, "commits": commits, "index": index,
        "wheel": src.wheel(root / "dist", "wheelpkg", "1.0"),
        "sdist": src.sdist(root / "dist", "sdistpkg", "1.0"),
        "dir": src.project(root / "dirpkg", "dirpkg"),
        "editable": src.project(root / "editpkg", "editpkg"),
    }


def test_every_form_builds_locks_and_rebuilds_exactly(tmp_path, mount_base, sources):
    root, commits = sources["root"], sources["commits"]
    project = tmp_path / "p"
    project.mkdir()
    (project / "constraints.txt").write_text("idxpkg<2\n")
    (project / "requirements.txt").write_text("\n".join([
        f"--extra-index-url {sources['index'].as_uri()}",
        "-c constraints.txt",
        "idxpkg",
        f"git+{(root / 'vcstag').as_uri()}@v1#egg=vcstag",
        f"git+{(root / 'vcsbranch').as_uri()}@stable#egg=vcsbranch",
        f"git+{(root / 'vcscommit').as_uri()}@{commits['vcscommit']}#egg=vcscommit",
        str(sources["wheel"]),
        "../sources/dist/sdistpkg-1.0.tar.gz",
        "../sources/dirpkg",
        f"-e {sources['editable']}",
    ]) + "\n")
    cnd("init", cwd=project, check=True)
    set_config(project, mount_base_directory=str(mount_base))
    r = cnd("build", "--backend", "python", cwd=project, env=environ(), timeout=900)
    assert r.returncode == 0, r.stderr
    assert f"cnd: note: dirpkg is built from the directory {root / 'dirpkg'}, which may change" in r.stderr
    assert f"cnd: note: editpkg is an editable install of {root / 'editpkg'}" in r.stderr

    lock = json.loads((project / "condainer.lock").read_text())
    pkgs = {p["name"]: p for p in lock["pip"]}
    assert set(pkgs) == {"idxpkg", "vcstag", "vcsbranch", "vcscommit", "wheelpkg", "sdistpkg", "dirpkg", "editpkg"}
    assert pkgs["idxpkg"]["version"] == "1.0", "the constraint applied"
    idx_file = root / "index-files" / "idxpkg-1.0-py3-none-any.whl"
    assert pkgs["idxpkg"]["sha256"] == hashlib.sha256(idx_file.read_bytes()).hexdigest()
    assert lock["pip_options"] == [f"--extra-index-url {sources['index'].as_uri()}"]
    for name in ("vcstag", "vcsbranch", "vcscommit"):
        assert (pkgs[name]["vcs"], pkgs[name]["commit"]) == ("git", commits[name])
    for name in ("wheel", "sdist"):
        entry = pkgs[f"{name}pkg"]
        assert entry["direct"] and entry["sha256"] == hashlib.sha256(sources[name].read_bytes()).hexdigest()
    assert pkgs["dirpkg"]["directory"] == "built" and len(pkgs["dirpkg"]["wheel_sha256"]) == 64
    assert pkgs["editpkg"]["directory"] == "editable"

    # the branch moves on; a --locked build still installs the locked commit, twice the same image
    src.advance(root / "vcsbranch", "vcsbranch", "stable", "two")
    digests = []
    for _ in range(2):
        r = cnd("-q", "build", "--locked", "--force", "--backend", "python", cwd=project, env=environ(), timeout=900)
        assert r.returncode == 0, r.stderr
        digests.append(_digest(project))
    assert digests[0] == digests[1]
    assert _values(project, "vcsbranch", "idxpkg", "dirpkg", "editpkg") == ["one", "1.0", "one", "one"]
    cnd("-q", "umount", cwd=project)
    r = cnd("-q", "build", "--force", "--backend", "python", cwd=project, env=environ(), timeout=900)
    assert r.returncode == 0, r.stderr
    assert json.loads((project / "condainer.lock").read_text())["pip"] != lock["pip"], "a solve takes the new commit"
    assert _values(project, "vcsbranch") == ["two"]
    cnd("-q", "umount", cwd=project)

    # a directory that changed is refused, in one line that names it and `cnd lock`
    (root / "dirpkg" / "dirpkg" / "__init__.py").write_text("V = 'changed'\n")
    msg = one_line_error(cnd("build", "--locked", "--force", cwd=project, env=environ(), timeout=900))
    assert msg == (f"cnd: error: {root / 'dirpkg'} changed since condainer.lock was written (the wheel of dirpkg "
                   f"it builds is another): run `cnd lock` to update it")
    assert not mountpoint_of(project).exists()


def test_index_url_and_hashes(tmp_path, mount_base, sources):
    idx_file = sources["root"] / "index-files" / "idxpkg-2.0-py3-none-any.whl"
    sha = hashlib.sha256(idx_file.read_bytes()).hexdigest()
    project = tmp_path / "p"
    project.mkdir()
    (project / "requirements.txt").write_text(f"--index-url {sources['index'].as_uri()}\n"
                                              f"idxpkg==2.0 --hash=sha256:{sha}\n")
    cnd("init", cwd=project, check=True)
    set_config(project, mount_base_directory=str(mount_base))
    assert cnd("-q", "lock", cwd=project, env=environ()).returncode == 0
    lock = json.loads((project / "condainer.lock").read_text())
    assert [(p["name"], p["version"], p["sha256"]) for p in lock["pip"]] == [("idxpkg", "2.0", sha)]
    assert lock["pip_options"] == [f"--index-url {sources['index'].as_uri()}"]
    r = cnd("-q", "build", "--locked", "--backend", "python", cwd=project, env=environ())
    assert r.returncode == 0, r.stderr
    assert _values(project, "idxpkg") == ["2.0"]
    cnd("-q", "umount", cwd=project)

    (project / "requirements.txt").write_text(f"--index-url {sources['index'].as_uri()}\n"
                                              f"idxpkg==2.0 --hash=sha256:{'0' * 64}\n")
    msg = one_line_error(cnd("build", "--force", cwd=project, env=environ()))
    assert "hash" in msg.lower()
