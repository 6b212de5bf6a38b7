"""`cnd build` with a conda frontend the user has (conda_exe) or a Miniforge installer.

None of these can be installed here (no conda channel is reachable), so tests/workflow/fake_conda.py
stands in for them: it keeps their contract, including "Non-conda folder exists at prefix" for a
create into an existing directory and prompts that abort without a yes.  Each build goes through
the real packer and the real mount; the image must hold what the frontend installed, at the path
it was installed at.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from condainer import mounts

from .conftest import cnd, end_private_mounts, force_unmount, mountpoint_of, set_config
from .test_project import one_line_error

FAKE = Path(__file__).with_name("fake_conda.py")
ENV_YML = "name: demo\nchannels:\n  - conda-forge\ndependencies:\n  - alpha\n  - beta=1.0\n"


@pytest.fixture
def fake_bin(tmp_path) -> Path:
    """A directory with micromamba, mamba and conda, all the fake, first on PATH."""
    d = tmp_path / "fakebin"
    d.mkdir()
    for tool in ("micromamba", "mamba", "conda"):
        shutil.copy(FAKE, d / tool)
        os.chmod(d / tool, 0o755)
    return d


def _env(fake_bin: Path, log: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, FAKE_CONDA_LOG=str(log), PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    # the fake runs with the interpreter of the tests, whatever `python3` is on PATH
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env['PATH']}"
    env.update(extra)
    return env


def _project(tmp_path: Path, mount_base: Path, **cfg) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "environment.yml").write_text(ENV_YML)
    cnd("init", cwd=project, check=True)
    set_config(project, mount_base_directory=str(mount_base), **cfg)
    return project


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize("tool", ["micromamba", "mamba", "conda"])
def test_build_with_conda_exe(tmp_path, mount_base, fake_bin, tool):
    project = _project(tmp_path, mount_base, conda_exe=tool)
    log = tmp_path / "calls.jsonl"
    env = _env(fake_bin, log)
    mp = mountpoint_of(project)
    try:
        r = cnd("build", "--backend", "native", cwd=project, env=env)
        assert r.returncode == 0, r.stderr
        [call] = _calls(log)
        assert call["tool"] == tool
        assert call["args"][call["args"].index("--prefix") + 1] == str(mp)
        r = cnd("exec", "--", "beta-hello", cwd=project, env=env)
        assert (r.returncode, r.stdout.strip()) == (0, f"hello from beta at {mp}"), r.stderr
        r = cnd("exec", "--", "ls", f"{mp}/conda-meta", cwd=project, env=env)
        assert r.stdout.split() == ["alpha-1.0-0.json", "beta-1.0-0.json", "history"]
    finally:
        cnd("umount", cwd=project, env=env)
        force_unmount(mp)
        end_private_mounts(project)  # a private mount's holder leaves a moment after its last command
    assert mounts.find_mount(mp) is None and not mp.exists()  # unmounted, and the empty mount point removed


def test_frontend_failure_is_one_line_and_leaves_nothing(tmp_path, mount_base, fake_bin):
    project = _project(tmp_path, mount_base, conda_exe="mamba")
    env = _env(fake_bin, tmp_path / "calls.jsonl", FAKE_CONDA_FAIL="nothing provides gamma needed by alpha")
    msg = one_line_error(cnd("build", cwd=project, env=env))
    assert "mamba env update failed" in msg and "nothing provides gamma" in msg
    assert not list(project.glob("*.squashfs"))
    assert not mountpoint_of(project).exists()


def test_build_with_a_miniforge_installer(tmp_path, mount_base, fake_bin):
    """A local Miniforge-like installer (CONDAINER_INSTALLER): base installed with -b -f -p at the
    staging directory, then the environment.yml applied with the installer's own mamba."""
    installer = tmp_path / "Miniforge3-Linux-x86_64.sh"
    installer.write_text(
        "#!/bin/bash\n"
        'while getopts "bfp:" o; do case $o in p) P=$OPTARG;; esac; done\n'
        '[ -n "$P" ] || { echo "usage: -b -f -p PREFIX" >&2; exit 2; }\n'
        '[ -e "$P" ] && [ -n "$(ls -A "$P")" ] && ! [[ " $* " == *" -f "* ]] && { echo "ERROR: $P exists" >&2; exit 1; }\n'
        'mkdir -p "$P/bin" "$P/conda-meta" && touch "$P/conda-meta/history"\n'
        f'cp {FAKE} "$P/bin/mamba" && chmod 755 "$P/bin/mamba"\n'
        f"echo '{{\"tool\": \"installer\", \"args\": \"'\"$*\"'\"}}' >> \"$FAKE_CONDA_LOG\"\n"
    )
    project = _project(tmp_path, mount_base)
    log = tmp_path / "calls.jsonl"
    env = _env(fake_bin, log, CONDAINER_INSTALLER=str(installer))
    mp = mountpoint_of(project)
    try:
        r = cnd("build", "--backend", "native", cwd=project, env=env)
        assert r.returncode == 0, r.stderr
        calls = _calls(log)
        assert [c["tool"] for c in calls] == ["installer", "mamba"]
        assert calls[0]["args"] == f"-b -f -p {mp}"
        assert calls[1]["args"][:2] == ["env", "update"]
        r = cnd("exec", "--", "alpha-hello", cwd=project, env=env)
        assert (r.returncode, r.stdout.strip()) == (0, f"hello from alpha at {mp}"), r.stderr
    finally:
        cnd("umount", cwd=project, env=env)
        force_unmount(mp)
