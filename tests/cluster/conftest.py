"""Session fixtures for the cluster tests: one real Slurm for the whole session, one built project.

The cluster has four nodes on this machine, each slurmd in its own mount and UTS namespace with a
private tmpfs on /tmp: ``vm`` (this host's short name, partition ``single``, the default) and
``cn1``..``cn3`` (partition ``multi``), on loopback addresses 127.0.0.1 and 127.0.1.1-3.
Everything is torn down at the end of the session, whatever happened (see slurm.py).
"""

from __future__ import annotations

import os
import pathlib
import shlex
import socket
import subprocess
import sys

import pytest

from .slurm import ClusterUnavailable, Node, SlurmCluster, reap_leftovers

REPO = pathlib.Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "scripts" / "install-slurm.sh"
MULTI_NODES = ("cn1", "cn2", "cn3")


def pytest_collection_modifyitems(items):
    for item in items:
        if pathlib.Path(str(item.fspath)).parent == pathlib.Path(__file__).parent:
            item.add_marker(pytest.mark.cluster)


_TIMINGS: list[str] = []


def record_timing(line: str) -> None:
    """A measurement to show at the end of the session (mount times from 1 to 64 ranks, ...)."""
    _TIMINGS.append(line)


def pytest_terminal_summary(terminalreporter):
    if _TIMINGS:
        terminalreporter.section("cluster timings")
        for line in _TIMINGS:
            terminalreporter.write_line(line)


def _install_slurm() -> None:
    result = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise ClusterUnavailable(f"scripts/install-slurm.sh failed: {result.stderr.strip()[-500:]}")


@pytest.fixture(scope="session")
def slurm():
    """A running Slurm cluster; the cluster tests skip only if Slurm cannot be installed or started."""
    try:
        _install_slurm()
    except (ClusterUnavailable, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"Slurm unavailable: {exc}")
    reap_leftovers()
    host = socket.gethostname().split(".")[0]
    nodes = [Node(host, "127.0.0.1")] + [Node(n, f"127.0.1.{i}") for i, n in enumerate(MULTI_NODES, 1)]
    cluster = SlurmCluster(nodes, {"single": [host], "multi": list(MULTI_NODES)}, default="single")
    try:
        cluster.start()
    except ClusterUnavailable as exc:
        cluster.stop()
        pytest.skip(f"Slurm could not be started: {exc}")
    except BaseException:
        cluster.stop()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


# -- condainer ------------------------------------------------------------------------------------------

# The interpreter running pytest (the main checkout's .venv) with PYTHONPATH pointing at this tree
# (tests/conftest.py): srun exports the environment, so every rank runs the condainer under test.
# CONDAINER_TEST_CND replaces that command (e.g. "/path/to/cnd" to test an installed cnd).
CND = shlex.split(os.environ.get("CONDAINER_TEST_CND", "")) or [sys.executable, "-m", "condainer"]


def cnd_commands() -> set[str]:
    out = subprocess.run([*CND, "--help"], capture_output=True, text=True, timeout=60).stdout
    commands, in_list = set(), False
    for line in out.splitlines():
        if line.strip().lower().startswith("commands"):
            in_list = True
        elif in_list and line.startswith("  ") and line.strip():
            commands.add(line.split()[0])
    return commands


def exec_backends() -> list[str]:
    """Backends ``cnd exec`` accepts (["native", "python"] once --backend exists)."""
    out = subprocess.run([*CND, "exec", "--help"], capture_output=True, text=True, timeout=60).stdout
    return ["native", "python"] if "--backend" in out else ["native"]


@pytest.fixture(scope="session")
def project(slurm):
    """A pip project (requirements.txt: six) built once into its image, on the "shared file system".

    It lives in the cluster's state directory, outside /tmp: every node sees it (each node's /tmp
    is its own), as a project on a parallel file system would be.
    """
    missing = {"init", "build", "exec"} - cnd_commands()
    if missing:
        pytest.skip(f"cnd lacks {', '.join(sorted(missing))} (not on main yet)")
    path = slurm.state / "project"
    path.mkdir()
    env = dict(os.environ)
    for step in (["init"], ["build"]):
        if step == ["build"]:
            (path / "requirements.txt").write_text("six\n")
            for name in ("environment.yml",):
                (path / name).unlink(missing_ok=True)
        result = subprocess.run([*CND, *step], cwd=path, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, f"cnd {step[0]} failed:\n{result.stdout}\n{result.stderr}"
    return Project(path)


class Project:
    """A built condainer project: its directory, uuid, and what a node shows of it (mount, state)."""

    def __init__(self, path: pathlib.Path):
        import yaml

        self.path = path
        config = yaml.safe_load((path / "condainer.yml").read_text())
        self.uuid = config["uuid"]
        self.mount_base = config.get("mount_base_directory") or "/tmp"
        self.mountpoint = f"{self.mount_base}/condainer-{self.uuid}"
        self.image = path / f"{self.uuid}.squashfs"

    def on_node(self, node: Node, inside: str) -> pathlib.Path:
        """A path as ``node`` sees it (its private /tmp), reached through its slurmd's /proc root."""
        return pathlib.Path(f"/proc/{node.pid}/root{inside}")

    def state_dirs(self, node: Node) -> list[pathlib.Path]:
        """cnd's per-node state directories of this project: <base>/.condainer-<uuid>-<uid>-<host>."""
        return sorted(self.on_node(node, self.mount_base).glob(f".condainer-{self.uuid}*"))

    def mount_log(self, node: Node) -> list[dict[str, str]]:
        """The mounts cnd made on ``node``, one dict per line of its mounts.log (time, host, pid, ...)."""
        entries = []
        for state in self.state_dirs(node):
            log = state / "mounts.log"
            if log.exists():
                for line in log.read_text().splitlines():
                    time_, *fields = line.split()
                    entries.append({"time": time_, **dict(f.split("=", 1) for f in fields)})
        return entries

    def users(self, node: Node) -> list[str]:
        """Entries of cnd's per-node reference count (one per exec it believes is running)."""
        return [u.name for state in self.state_dirs(node) if (state / "users").is_dir()
                for u in (state / "users").iterdir()]

    def mounts(self, node: Node) -> list[str]:
        """Lines of ``node``'s mount table at this project's mount point."""
        return [line for line in node.mountinfo().splitlines() if line.split()[4] == self.mountpoint]

    def statvfs_error(self, node: Node) -> str | None:
        """What statvfs of the mount point says on ``node`` ("Transport endpoint..." when stale)."""
        result = subprocess.run(
            ["nsenter", "-t", str(node.pid), "-m", "python3", "-c", f"import os; os.statvfs({self.mountpoint!r})"],
            capture_output=True, text=True, timeout=30)
        return result.stderr.strip().splitlines()[-1] if result.returncode else None
