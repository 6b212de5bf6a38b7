"""Fixtures for the cluster tests: one real Slurm for all of tests/cluster, one built project.

The cluster has four nodes on this machine, each slurmd in its own mount and UTS namespace with a
private tmpfs on /tmp: ``vm`` (this host's short name, partition ``single``, the default) and
``cn1``..``cn3`` (partition ``multi``), on loopback addresses 127.0.0.1 and 127.0.1.1-3.
Everything is torn down after the last cluster test, whatever happened (see slurm.py).
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import pytest

from .project import CND, build_six_project, cnd_commands
from .slurm import ClusterUnavailable, Node, SlurmCluster, reap_leftovers

REPO = pathlib.Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "scripts" / "install-slurm.sh"
MULTI_NODES = ("cn1", "cn2", "cn3")


def pytest_collection_modifyitems(items):
    here = pathlib.Path(__file__).parent
    for item in items:
        if pathlib.Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.cluster)
    # The harness's own tests first: when Slurm itself misbehaves, they say so before cnd is blamed.
    slots = [i for i, item in enumerate(items) if pathlib.Path(str(item.fspath)).parent == here]
    ours = sorted((items[i] for i in slots), key=lambda item: pathlib.Path(str(item.fspath)).name != "test_harness.py")
    for i, item in zip(slots, ours, strict=True):
        items[i] = item


_NOTES: list[str] = []


def report(line: str) -> None:
    """A line for the "cluster report" at the end of the run (mount times from 1 to 64 ranks, ...)."""
    _NOTES.append(line)


def pytest_terminal_summary(terminalreporter):
    if _NOTES:
        terminalreporter.section("cluster report")
        for line in _NOTES:
            terminalreporter.write_line(line)


def _install_slurm() -> None:
    result = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise ClusterUnavailable(f"scripts/install-slurm.sh failed: {result.stderr.strip()[-500:]}")


# Package scope: one Slurm for all of tests/cluster, stopped as soon as its last test is done.
def task_paths() -> list[str]:
    """What every rank needs to see: this checkout (PYTHONPATH) and the interpreter running the tests."""
    return [str(REPO), sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))]


@pytest.fixture(scope="package")
def slurm():
    """A running Slurm cluster; the cluster tests skip only if Slurm cannot be installed or started."""
    try:
        _install_slurm()
    except (ClusterUnavailable, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"Slurm unavailable: {exc}")
    reap_leftovers()
    host = socket.gethostname().split(".")[0]
    nodes = [Node(host, "127.0.0.1")] + [Node(n, f"127.0.1.{i}") for i, n in enumerate(MULTI_NODES, 1)]
    cluster = SlurmCluster(nodes, {"single": [host], "multi": list(MULTI_NODES)}, default="single",
                           keep_visible=task_paths())
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

@pytest.fixture(scope="package")
def project(slurm):
    """A pip project (requirements.txt: six) built once into its image, on the "shared file system".

    It lives in the cluster's state directory, outside /tmp: every node sees it (each node's /tmp
    is its own), as a project on a parallel file system would be.
    """
    missing = {"init", "build", "exec"} - cnd_commands()
    if missing:
        pytest.skip(f"cnd lacks {', '.join(sorted(missing))} (not on main yet)")
    return build_six_project(slurm.state / "project", CND)


@pytest.fixture(autouse=True)
def _mount_mode_of_the_jobs(request, monkeypatch):
    """Jobs get the cluster's environment, fixed when it started: pass the test's mount mode on
    (@pytest.mark.host_mode, or the suite's $CONDAINER_MOUNT_MODE)."""
    if "slurm" not in request.fixturenames:
        return
    cluster = request.getfixturevalue("slurm")
    mode = "host" if request.node.get_closest_marker("host_mode") else os.environ.get("CONDAINER_MOUNT_MODE")
    if mode:
        monkeypatch.setitem(cluster.env, "CONDAINER_MOUNT_MODE", mode)
    else:
        monkeypatch.delitem(cluster.env, "CONDAINER_MOUNT_MODE", raising=False)
