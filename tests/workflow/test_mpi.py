"""MPI ranks on one node share memory through a private mount: MPICH from Debian, mpi4py from PyPI.

`mpiexec -n 2` starts two ranks through the python launcher (and through `cnd exec`); they join one
user namespace and use an MPI shared-memory window (MPI_Win_allocate_shared) between them, with both
FUSE backends. mpi4py is built from its sdist against the system's MPICH (`--no-binary mpi4py` in
requirements.txt, as a cluster user builds it against the site's MPI; PyPI's wheel expects a
libmpi.so.12 that Debian's MPICH does not ship).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from condainer.node import mount_mode

from .conftest import BACKENDS, backend_param, cnd, end_private_mounts, mountpoint_of, set_config

pytestmark = pytest.mark.skipif(
    shutil.which("mpiexec") is None or shutil.which("mpicc") is None or mount_mode.problem() is not None,
    reason="needs MPICH (mpiexec, mpicc: packages mpich libmpich-dev) and unprivileged user namespaces",
)

RANK = """
import os, sys
from mpi4py import MPI
world = MPI.COMM_WORLD
node = world.Split_type(MPI.COMM_TYPE_SHARED)
win = MPI.Win.Allocate_shared(16 if node.rank == 0 else 0, 1, comm=node)
buf, _ = win.Shared_query(0)
mem = memoryview(buf)
win.Fence()
if node.rank == 0:
    mem[:9] = b"condainer"
win.Fence()
with open(os.path.join(sys.argv[1], str(world.rank)), "w") as out:  # one file each: no interleaving
    print(world.rank, node.size, os.readlink("/proc/self/ns/mnt"), os.getuid(), bytes(mem[:9]).decode(), file=out)
win.Free()
"""


@pytest.fixture(scope="module")
def mpi_project(tmp_path_factory):
    project = tmp_path_factory.mktemp("mpi") / "proj"
    project.mkdir()
    (project / "requirements.txt").write_text("--no-binary mpi4py\nmpi4py\n")
    cnd("init", cwd=project, check=True)
    base = tmp_path_factory.mktemp("mpibase")
    os.chmod(base, 0o755)
    set_config(project, mount_base_directory=str(base))
    cnd("-q", "build", cwd=project, check=True, timeout=1200)
    yield project
    end_private_mounts(project)


@pytest.mark.parametrize("backend", [backend_param(b) for b in BACKENDS])
def test_mpi_ranks_share_memory_in_one_private_mount(mpi_project, backend, monkeypatch, tmp_path):
    monkeypatch.setenv("CONDAINER_MOUNT_MODE", "namespace")
    set_config(mpi_project, backend=backend)
    end_private_mounts(mpi_project)
    host_ns = os.readlink("/proc/self/ns/mnt")
    ways = {"launcher": [str(mpi_project / "bin" / "python")],
            "cnd exec": [sys.executable, "-m", "condainer", "-d", str(mpi_project), "exec", "--", "python"]}
    for way, start in ways.items():
        out = tmp_path / way.replace(" ", "-")
        out.mkdir()
        r = subprocess.run(["mpiexec", "-n", "2", *start, "-c", RANK, str(out)], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, (way, r.stderr)
        ranks = sorted(path.read_text().split() for path in out.iterdir())
        assert [fields[0] for fields in ranks] == ["0", "1"], (way, ranks)
        assert {fields[1] for fields in ranks} == {"2"}, "both ranks are on one node"
        namespaces = {fields[2] for fields in ranks}
        assert len(namespaces) == 1 and host_ns not in namespaces, f"{way}: one private namespace for both ranks"
        assert {fields[3] for fields in ranks} == {str(os.getuid())}, "the ranks run as the user"
        assert {fields[4] for fields in ranks} == {"condainer"}, "rank 1 read what rank 0 wrote into shared memory"
    assert str(mountpoint_of(mpi_project)) not in open("/proc/self/mountinfo").read()
    end_private_mounts(mpi_project)
