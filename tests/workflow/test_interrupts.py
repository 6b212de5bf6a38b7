"""Interrupting `cnd build` (SIGTERM, SIGHUP, Ctrl-C to the process group) while an installer and its
grandchildren are still writing into the staging directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import cnd, mountpoint_of, set_config, start_build

# A conda frontend whose grandchild keeps creating files in the prefix and ignores SIGTERM, like
# venv's ensurepip or pip's build subprocesses: it must be gone before the staging dir is removed.
STUBBORN = """\
import os, signal, sys, time
prefix = sys.argv[sys.argv.index("--prefix") + 1]
if os.fork() == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(os.environ["MARKER"], "w") as fh:
        fh.write(str(os.getpid()))
    i = 0
    while True:
        try:
            open(os.path.join(prefix, f"junk-{i}"), "w").close()
        except OSError:
            pass
        i += 1
        time.sleep(0.001)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "SIGINT-to-group"])
def test_interrupted_build_stops_installer_group_and_removes_staging(tmp_path, mount_base, how):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "micromamba"
    fake.write_text(f"#!{sys.executable}\n{STUBBORN}")
    fake.chmod(0o755)
    project = tmp_path / "p"
    project.mkdir()
    (project / "environment.yml").write_text("name: x\ndependencies:\n  - alpha\n")
    cnd("init", cwd=project, check=True)
    set_config(project, mount_base_directory=str(mount_base), conda_exe="micromamba")
    marker = tmp_path / "grandchild.pid"
    env = dict(os.environ, MARKER=str(marker), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen([sys.executable, "-m", "condainer", "build"], cwd=project, env=env,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    staging = mountpoint_of(project)
    deadline = time.monotonic() + 30
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    grandchild = int(marker.read_text())
    time.sleep(0.3)  # let it fill the prefix
    try:
        if how == "SIGINT-to-group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(getattr(signal, how))
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1] == "cnd: interrupted", err
        assert "Traceback" not in err
        assert not _alive(grandchild), "the installer's grandchild must be stopped"
        assert not staging.exists(), "the staging directory must be removed"
        assert not list(project.glob("*.squashfs"))
    finally:
        if _alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)
        proc.kill()


def test_build_after_interrupt_is_not_refused(tmp_path, mount_base):
    """The interrupted build above leaves nothing that blocks the next one (pip project, real pip)."""
    project = Path(tmp_path)
    (project / "requirements.txt").write_text("six\n")
    cnd("init", cwd=project, check=True)
    set_config(project, mount_base_directory=str(mount_base))
    proc, staging = start_build(project)
    time.sleep(0.5)  # venv's ensurepip is running now
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert not staging.exists()
    r = cnd("-q", "build", cwd=project)
    assert r.returncode == 0, r.stderr
