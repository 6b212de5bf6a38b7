"""Fixtures for end-to-end workflow tests: real builds, real mounts, always unmounted afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers.cnd import cnd as run_cnd
from tests.helpers.mounts import unmount

from .conda_channel import build_demo_channel

BACKENDS = ["native", "python"]


def cnd(*args: str, cwd: Path | None = None, check: bool = False, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run `cnd` of this checkout as a user would (tests/helpers/cnd.py); CHECK: fail on a non-zero exit."""
    result = run_cnd(*args, cwd=cwd, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"cnd {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def python_backend_available() -> bool:
    try:
        import condainer.fs.fuse  # noqa: F401
        import condainer.fs.writer  # noqa: F401
    except ImportError:
        return False
    return True


def backend_param(backend: str):
    """A --backend value for parametrize; the Python backend is skipped until it exists in this tree."""
    marks = []
    if backend == "python" and not python_backend_available():
        marks.append(pytest.mark.skip(reason="condainer.fs.writer / condainer.fs.fuse not in this tree yet"))
    return pytest.param(backend, marks=marks, id=backend)


def set_config(project: Path, **values) -> None:
    path = project / "condainer.yml"
    cfg = yaml.safe_load(path.read_text())
    cfg.update(values)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def mountpoint_of(project: Path) -> Path:
    cfg = yaml.safe_load((project / "condainer.yml").read_text())
    return Path(cfg["mount_base_directory"]) / f"condainer-{cfg['uuid']}"


def start_build(project: Path) -> tuple[subprocess.Popen, Path]:
    """Start `cnd build` in PROJECT; return once its staging directory has a bin/ (the installer is
    running), or after 30 s: (the build process, its stderr piped; the staging directory)."""
    proc = subprocess.Popen([sys.executable, "-m", "condainer", "build"], cwd=project,
                            stderr=subprocess.PIPE, text=True)
    staging = mountpoint_of(project)
    deadline = time.monotonic() + 30
    while not (staging / "bin").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc, staging


def kill_as_slurm_does(proc: subprocess.Popen, mountpoint: Path) -> None:
    """What Slurm does to a cancelled step: SIGKILL to the task's process group (PROC, started with
    start_new_session) and, here, to the FUSE daemon serving MOUNTPOINT too; the mount stays behind."""
    daemons = subprocess.run(["pgrep", "-f", str(mountpoint)], capture_output=True, text=True).stdout.split()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for pid in daemons:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.2)


def exec_mode() -> str:
    """'namespace' or 'host': where `cnd exec` and the launchers of these tests mount."""
    from condainer.node import mount_mode

    wanted = os.environ.get("CONDAINER_MOUNT_MODE") or "auto"
    if wanted == "auto":
        return "namespace" if mount_mode.problem() is None else "host"
    return wanted


def holders_of(project: Path) -> list[int]:
    """Live holders of PROJECT's private mounts of this user on this node (private_mount.py)."""
    from condainer.node import records

    uuid = mountpoint_of(project).name.removeprefix("condainer-")
    directory = Path(records.registry_dir())
    found = []
    for path in directory.glob(f"{uuid}-*") if directory.is_dir() else []:
        record = records.Record.read(str(path)) if not path.name.endswith(".lock") else None
        if record is not None and record.alive():
            found.append(record.pid)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def end_private_mounts(project: Path, timeout: float = 10) -> None:
    """Ask this user's holders of PROJECT to retire (what `cnd umount` does) and wait until they
    have exited (a holder removes its record first, then the mount point), so that the next test
    starts with none; one that stays is killed and reported."""
    pids = holders_of(project)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (holders_of(project) or any(map(_alive, pids))):
        time.sleep(0.05)
    mp = mountpoint_of(project)
    while time.monotonic() < deadline and mp.exists() and not any(mp.iterdir()) and mp.stat().st_mode & 0o077:
        time.sleep(0.05)  # a private mount's directory (0755), removed by the holder's janitor
    left = [pid for pid in {*pids, *holders_of(project)} if _alive(pid)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"holders {left} of {project} did not leave"


def force_unmount(path: Path) -> None:
    """Unmount PATH whatever state it is in (tests/helpers/mounts.py)."""
    unmount(str(path))


@pytest.fixture
def mount_base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("mnt")
    os.chmod(base, 0o755)
    return base


def _make_pip_project(root: Path, base: Path, backend: str) -> Path:
    project = root / f"pip-{backend}"
    project.mkdir()
    (project / "requirements.txt").write_text("six\n")
    cnd("init", cwd=project, check=True)
    set_config(project, mount_base_directory=str(base))
    cnd("build", "--backend", backend, cwd=project, check=True)
    return project


@pytest.fixture(scope="session")
def pip_projects(tmp_path_factory):
    """One built pip project (six from PyPI) per backend, built lazily and shared by the session."""
    root = tmp_path_factory.mktemp("projects")
    base = tmp_path_factory.mktemp("base")
    built: dict[str, Path] = {}

    def get(backend: str) -> Path:
        if backend not in built:
            built[backend] = _make_pip_project(root, base, backend)
        return built[backend]

    yield get
    for project in built.values():
        force_unmount(mountpoint_of(project))


@pytest.fixture
def pip_project(pip_projects, request):
    """The built pip project for the test's `backend` parameter; unmounted after the test."""
    project = pip_projects(request.param if hasattr(request, "param") else "native")
    end_private_mounts(project)
    yield project
    mp = mountpoint_of(project)
    cnd("-q", "umount", cwd=project)
    force_unmount(mp)
    end_private_mounts(project)


@pytest.fixture(scope="session")
def conda_channel(tmp_path_factory) -> Path:
    return build_demo_channel(tmp_path_factory.mktemp("channel") / "chan")
