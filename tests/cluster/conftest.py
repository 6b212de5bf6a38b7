"""Session fixtures for the cluster tests: one real Slurm for the whole session, one built project.

The cluster has four nodes on this machine, each slurmd in its own mount and UTS namespace with a
private tmpfs on /tmp: ``vm`` (this host's short name, partition ``single``, the default) and
``cn1``..``cn3`` (partition ``multi``), on loopback addresses 127.0.0.1 and 127.0.1.1-3.
Everything is torn down at the end of the session, whatever happened (see slurm.py).
"""

from __future__ import annotations

import os
import pathlib
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
CND = [sys.executable, "-m", "condainer"]


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
    """A built condainer project: its directory, uuid and the mount point it uses on every node."""

    def __init__(self, path: pathlib.Path):
        import yaml

        self.path = path
        config = yaml.safe_load((path / "condainer.yml").read_text())
        self.uuid = config["uuid"]
        self.mount_base = config.get("mount_base_directory") or "/tmp"
        self.mountpoint = f"{self.mount_base}/condainer-{self.uuid}"
        self.image = path / f"{self.uuid}.squashfs"
