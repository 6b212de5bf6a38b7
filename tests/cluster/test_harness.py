"""The Slurm harness itself, with plain commands: what the condainer tests rely on really holds."""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import MULTI_NODES

SRUN_TIMEOUT = 60


def test_all_nodes_come_up_idle(slurm):
    slurm.wait_idle(30)  # a job of an earlier test may still be completing
    assert slurm.node_states() == {name: "idle" for name in slurm.nodes}


def test_srun_64_ranks_on_one_node(slurm):
    result = slurm.run(["srun", "-n", "64", "sh", "-c", 'echo "$SLURM_PROCID $(hostname)"'], SRUN_TIMEOUT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    ranks = sorted(int(r) for r in lines[0::2])
    assert ranks == list(range(64))
    assert set(lines[1::2]) == {slurm.default_node}


def test_failing_rank_fails_srun(slurm):
    result = slurm.run(["srun", "-n", "4", "sh", "-c", 'exit $(( SLURM_PROCID == 2 ? 3 : 0 ))'], SRUN_TIMEOUT)
    assert result.returncode != 0


def test_each_node_has_its_own_tmp_and_hostname(slurm):
    # Every rank leaves a file in /tmp and lists what it sees: a node sees its own ranks' files only.
    script = 'touch /tmp/rank-$SLURM_PROCID; sleep 1; echo "$(hostname) $SLURMD_NODENAME $(ls /tmp | grep -c rank-)"'
    result = slurm.run(["srun", "-p", "multi", "-N", "3", "--ntasks-per-node=2", "sh", "-c", script],
                       SRUN_TIMEOUT)
    assert result.returncode == 0, result.stderr
    seen = sorted(tuple(line.split()) for line in result.stdout.splitlines())
    assert seen == sorted((n, n, "2") for n in MULTI_NODES for _ in range(2))
    assert not any(name.startswith("rank-") for name in os.listdir("/tmp"))
    namespaces = {slurm.nodes[n].mnt_namespace() for n in MULTI_NODES}
    assert len(namespaces) == 3 and os.readlink("/proc/self/ns/mnt") not in namespaces


def test_sbatch_job_with_two_steps(slurm):
    """A batch job runs, its steps run, and a failing job is reported as failed."""
    script = slurm.state / "two-steps.sh"
    script.write_text("#!/bin/sh\nsrun -n 2 hostname\nsrun -n 3 hostname\n")
    out = slurm.state / "two-steps.out"
    err = slurm.state / "two-steps.err"
    state, code = slurm.sbatch(script, ["-n", "3", "-o", str(out), "-e", str(err)], SRUN_TIMEOUT)
    assert (state, code) == ("COMPLETED", 0), f"{state} {code}\n{out.read_text()}{err.read_text()}"
    assert out.read_text().split() == [slurm.default_node] * 5
    failing = slurm.state / "failing.sh"
    failing.write_text("#!/bin/sh\nsrun -n 1 false\n")
    assert slurm.sbatch(failing, ["-n", "1", "-o", "/dev/null"], SRUN_TIMEOUT) == ("FAILED", 1)


@pytest.mark.skipif(not (os.path.exists("/usr/bin/squashfuse_ll") and os.path.exists("/usr/bin/mksquashfs")),
                    reason="needs squashfuse_ll and mksquashfs")
def test_fuse_mount_inside_a_node_is_the_nodes_own_and_killing_its_daemon_leaves_it_stale(slurm):
    """What the condainer tests provoke: a FUSE mount private to one node, and a stale one after SIGKILL."""
    src = slurm.state / "harness-src"
    src.mkdir()
    (src / "hello.txt").write_text("hello\n")
    image = slurm.state / "harness.squashfs"
    subprocess.run(["mksquashfs", str(src), str(image), "-noappend", "-quiet", "-no-progress"], check=True,
                   capture_output=True)
    mnt = "/tmp/harness-mnt"
    mount = f"mkdir -p {mnt} && squashfuse_ll {image} {mnt} && cat {mnt}/hello.txt"
    result = slurm.run(["srun", "-p", "multi", "-w", "cn1", "-n", "1", "sh", "-c", mount], SRUN_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\n"
    cn1 = slurm.nodes["cn1"]
    assert f" {mnt} " in cn1.mountinfo()
    assert f" {mnt} " not in slurm.nodes["cn2"].mountinfo()
    assert not os.path.exists(mnt)

    daemons = slurm.fuse_daemons(cn1)
    assert len(daemons) == 1
    os.kill(daemons[0], 9)
    probe = f"python3 -c 'import os; os.statvfs(\"{mnt}\")'"
    result = slurm.run(["srun", "-p", "multi", "-w", "cn1", "-n", "1", "sh", "-c", probe], SRUN_TIMEOUT)
    assert result.returncode != 0 and "Transport endpoint is not connected" in result.stderr
    result = slurm.run(["srun", "-p", "multi", "-w", "cn1", "-n", "1", "sh", "-c",
                        f"fusermount3 -u -z {mnt} || umount -l {mnt}"], SRUN_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert f" {mnt} " not in cn1.mountinfo()
