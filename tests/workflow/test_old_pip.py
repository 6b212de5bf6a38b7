"""A host Python whose venvs bring a pip older than `pip install --report` (22.2), as Ubuntu 22.04's
does with pip 22.0.2: condainer installs with that pip, and a pip-only project builds, locks and
rebuilds from its lock to the same image.

The staging venv is made by the host Python's own venv module, so its pip is the one that Python's
ensurepip bundles: the test makes a copy of the running CPython (its standard library linked, not
copied) whose ensurepip bundles pip 22.0.2 from PyPI, and runs cnd from a venv of that copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import set_config

REPO = Path(__file__).resolve().parents[2]
OLD_PIP = "22.0.2"


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SOURCE_DATE_EPOCH")}


def python_with_old_pip(root: Path) -> Path:
    """A CPython at ROOT, the running one's, whose ensurepip installs pip OLD_PIP into new venvs."""
    base = Path(sys.base_prefix)
    stdlib = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (root / "bin").mkdir(parents=True)
    (root / "lib" / stdlib).mkdir(parents=True)
    shutil.copy2(base / "bin" / stdlib, root / "bin" / stdlib)  # a copy: Python finds its prefix from here
    for entry in (base / "lib").iterdir():
        if entry.name != stdlib:
            (root / "lib" / entry.name).symlink_to(entry)
    for entry in (base / "lib" / stdlib).iterdir():
        if entry.name != "ensurepip":
            (root / "lib" / stdlib / entry.name).symlink_to(entry)
    ensurepip = root / "lib" / stdlib / "ensurepip"
    shutil.copytree(base / "lib" / stdlib / "ensurepip", ensurepip)
    for wheel in (ensurepip / "_bundled").glob("pip-*.whl"):
        wheel.unlink()
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(ensurepip / "_bundled"),
                    f"pip=={OLD_PIP}"], check=True, capture_output=True, env=_environ())
    init = ensurepip / "__init__.py"
    text, n = re.subn(r'_PIP_VERSION = "[^"]+"', f'_PIP_VERSION = "{OLD_PIP}"', init.read_text())
    assert n == 1, "this CPython's ensurepip names its pip differently"
    init.write_text(text)
    return root / "bin" / stdlib


@pytest.fixture(scope="module")
def old_pip_cnd(tmp_path_factory) -> Path:
    """`cnd` installed with pip OLD_PIP into a venv of a Python whose venvs bring pip OLD_PIP."""
    python = python_with_old_pip(tmp_path_factory.mktemp("oldpip") / "python")
    venv = python.parent.parent.parent / "venv"
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True, env=_environ())
    version = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--version"], capture_output=True,
                             text=True, env=_environ()).stdout
    assert version.startswith(f"pip {OLD_PIP} "), version
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(REPO)],
                       capture_output=True, text=True, env=_environ(), timeout=600)
    assert r.returncode == 0, f"pip {OLD_PIP} could not install condainer: {r.stderr[-2000:]}"
    return venv / "bin" / "cnd"


def _cnd(cnd: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    r = subprocess.run([str(cnd), *args], cwd=cwd, capture_output=True, text=True, env=_environ(), timeout=600)
    assert r.returncode == 0, f"cnd {' '.join(args)} failed: {r.stderr[-2000:]}"
    return r


def test_pip_only_project_builds_and_locks_with_an_old_host_pip(old_pip_cnd, tmp_path, mount_base):
    project = tmp_path / "p"
    project.mkdir()
    (project / "requirements.txt").write_text("six\n")
    _cnd(old_pip_cnd, "init", cwd=project)
    set_config(project, mount_base_directory=str(mount_base))
    build = _cnd(old_pip_cnd, "build", "--backend", "python", cwd=project)
    assert f"pip {OLD_PIP} of the environment has no --report: installing pip==" in build.stderr
    lock = json.loads((project / "condainer.lock").read_text())
    by_name = {p["name"]: p for p in lock["pip"]}
    assert set(by_name) == {"pip", "six"}, "the newer pip the build installed is locked too"
    assert by_name["pip"]["version"] != OLD_PIP
    [image] = project.glob("*.squashfs")
    first = hashlib.sha256(image.read_bytes()).hexdigest()

    _cnd(old_pip_cnd, "-q", "build", "--locked", "--force", "--backend", "python", cwd=project)
    assert hashlib.sha256(image.read_bytes()).hexdigest() == first, "the locked rebuild gives the same image"
    out = _cnd(old_pip_cnd, "exec", "--", "python", "-m", "pip", "--version", cwd=project).stdout
    assert out.startswith(f"pip {by_name['pip']['version']} "), out
    _cnd(old_pip_cnd, "-q", "umount", cwd=project)
