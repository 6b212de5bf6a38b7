"""`cnd exec` under srun and sbatch: many ranks share one mount per node, and a killed job heals.

The ranks run ``python -m condainer exec`` of this tree (PYTHONPATH, exported by srun). Mounts are
counted from the lines cnd writes to its per-node mounts.log; "unmounted" is read from the node's own
mount table (/proc/<a process on it>/mountinfo), at most IDLE_WITHIN seconds after srun returns.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shlex
import signal
import subprocess
import time

import pytest

from .conftest import MULTI_NODES, report
from .project import CND, build_six_project, cnd_exec, exec_backends
from .slurm import die_with_parent, processes_in_namespace

SRUN_TIMEOUT = 120
SIX_PROBE = ("import os, six; "
             "print(os.environ['SLURM_PROCID'], os.environ['SLURMD_NODENAME'], six.__version__, six.__file__)")


@pytest.fixture(params=["native", "python"])
def backend(request):
    if request.param not in exec_backends():
        pytest.skip("python backend not available yet (cnd exec --backend or condainer.fs.fuse missing)")
    return request.param


def check_six_output(stdout: str, project, ranks: int, nodes: dict[str, int]) -> None:
    """Every rank printed once, from the node it was placed on, importing six from the image."""
    lines = [line.split() for line in stdout.splitlines() if line.strip()]
    assert sorted(int(fields[0]) for fields in lines) == list(range(ranks)), stdout
    per_node: dict[str, int] = {}
    for _rank, node, _version, path in lines:
        assert path.startswith(project.mountpoint + "/"), path
        per_node[node] = per_node.get(node, 0) + 1
    assert per_node == nodes


_OPEN_STEPS_BEFORE: dict[str, set[str]] = {}


@pytest.fixture(autouse=True)
def _note_open_steps(slurm, project):
    """Steps cnd holds open from earlier tests (a killed step's tasks never report): not this test's."""
    for name, node in slurm.nodes.items():
        _OPEN_STEPS_BEFORE[name] = set(project.open_steps(node))


# After srun returns, cnd's watcher of the step (condainer/reaper.py) may take a poll interval to
# notice that the step is over on the node and unmount: "idle" is allowed that long to arrive.
IDLE_WITHIN = 5.0


def watchers(node) -> list[int]:
    """cnd's step watchers (condainer/reaper.py) running on ``node``."""
    found = []
    for pid in processes_in_namespace(node.mnt_namespace()):
        try:
            if b"condainer.node.reaper" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


def assert_idle(project, node, steps_closed: bool = True) -> None:
    """Nothing of the project is left on ``node`` (within IDLE_WITHIN seconds): not mounted, no exec
    counted as running, no step watcher running, and (unless this test killed a step, whose tasks never
    report back) no step of this test still tracked."""
    def leftovers() -> list[str]:
        found = []
        if project.mounts(node):
            found.append(f"{project.mountpoint} still mounted")
        if project.users(node):
            found.append(f"reference count entries {project.users(node)}")
        left = set(project.open_steps(node)) - _OPEN_STEPS_BEFORE.get(node.name, set())
        if steps_closed and left:
            found.append(f"steps still tracked {sorted(left)}")
        if watchers(node):
            found.append(f"cnd step watchers still running: pids {watchers(node)}")
        return found

    deadline = time.monotonic() + IDLE_WITHIN
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not leftovers(), f"left on {node.name} {IDLE_WITHIN} s after the step: {leftovers()}"


def test_64_ranks_share_one_mount(slurm, project, backend):
    node = slurm.nodes[slurm.default_node]
    for ranks in (1, 8, 64):
        before = len(project.mount_log(node))
        start = time.monotonic()
        result = slurm.run(["srun", "-n", str(ranks), *cnd_exec(backend, "python", "-c", SIX_PROBE)],
                           SRUN_TIMEOUT, cwd=project.path)
        wall = time.monotonic() - start
        assert result.returncode == 0, result.stderr
        check_six_output(result.stdout, project, ranks, {node.name: ranks})
        new = project.mount_log(node)[before:]
        assert len(new) == 1, f"{ranks} ranks: expected one mount on {node.name}, log says {new}"
        assert_idle(project, node)
        report(f"{backend:6s} {ranks:3d} ranks, 1 node: mount {float(new[0]['seconds']):.3f} s, srun {wall:.2f} s")


def test_staggered_ranks_of_one_step_share_one_mount(slurm, project, backend):
    """Ranks of a step do not all start at once (a loaded node, a slow file system): still one mount."""
    node = slurm.nodes[slurm.default_node]
    before = len(project.mount_log(node))
    # Rank 1 starts its `cnd exec` a second after rank 0, whose command is over by then.
    late_start = f"sleep $SLURM_PROCID; exec {shlex.join(cnd_exec(backend, 'python', '-c', SIX_PROBE))}"
    result = slurm.run(["srun", "-n", "2", "sh", "-c", late_start], SRUN_TIMEOUT, cwd=project.path)
    assert result.returncode == 0, result.stderr
    check_six_output(result.stdout, project, 2, {node.name: 2})
    assert_idle(project, node)
    new = project.mount_log(node)[before:]
    assert len(new) == 1, f"expected one mount for the step on {node.name}, log says {new}"


def test_one_failing_rank(slurm, project, backend):
    node = slurm.nodes[slurm.default_node]
    script = ("import os, sys, time; rank = os.environ['SLURM_PROCID']; "
              "time.sleep(0 if rank == '5' else 1); print('done', rank); sys.exit(3 if rank == '5' else 0)")
    result = slurm.run(["srun", "-n", "8", *cnd_exec(backend, "python", "-c", script)], SRUN_TIMEOUT,
                       cwd=project.path)
    assert result.returncode != 0
    # The other ranks were not killed: they kept running after rank 5 failed and finished.
    assert sorted(result.stdout.split()[1::2], key=int) == [str(r) for r in range(8)], result.stdout
    assert "task 5: Exited with exit code 3" in result.stderr, result.stderr
    assert_idle(project, node)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.host_mode
@pytest.mark.parametrize("how", ["sigkill", "scancel"])
def test_next_exec_works_after_a_killed_step(slurm, project, backend, how):
    """A step dies mid-run; the next `cnd exec` on that node cleans what it left and works."""
    node = slurm.nodes[slurm.default_node]
    ready = slurm.state / f"ready-{backend}-{how}"
    ready.mkdir()
    script = f"import os, time; open('{ready}/' + os.environ['SLURM_PROCID'], 'w').close(); time.sleep(300)"
    srun = subprocess.Popen(["srun", "-n", "8", *cnd_exec(backend, "python", "-c", script)], env=slurm.env,
                            cwd=project.path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=die_with_parent)
    try:
        _wait_for(lambda: len(os.listdir(ready)) == 8, 60, "8 ranks running")
        assert len(project.mounts(node)) == 1
        if how == "sigkill":
            # Everything the step started on the node, the FUSE daemon included, dies at once:
            # nobody gets to unmount or to drop its reference count entry.
            victims = _step_processes(slurm, node)
            assert slurm.fuse_daemons(node) and set(slurm.fuse_daemons(node)) <= set(victims)
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
        else:
            # What a time limit or a user's scancel does: SIGTERM to the step's tasks, SIGKILL after KillWait.
            subprocess.run(["scancel", "-u", "root"], env=slurm.env, check=True, timeout=30)
        srun.wait(60)
    finally:
        if srun.poll() is None:
            os.killpg(srun.pid, signal.SIGKILL)
            srun.wait()
    assert srun.returncode != 0
    if how == "sigkill":
        # The situation cnd must heal: a mount whose daemon is gone, and entries of dead execs.
        assert len(project.mounts(node)) == 1
        assert "Transport endpoint is not connected" in (project.statvfs_error(node) or "")
        assert project.users(node), "expected reference count entries of the killed execs"

    before = len(project.mount_log(node))
    result = slurm.run(["srun", "-n", "4", *cnd_exec(backend, "python", "-c", SIX_PROBE)], SRUN_TIMEOUT,
                       cwd=project.path)
    assert result.returncode == 0, result.stderr
    check_six_output(result.stdout, project, 4, {node.name: 4})
    # After SIGKILL the stale mount had to be replaced. After scancel the execs may have unmounted on
    # SIGTERM, or left a live mount (busy while the other ranks died, or cut short by SIGKILL after
    # KillWait) that this step reused.
    mounted = len(project.mount_log(node)) - before
    assert mounted == 1 if how == "sigkill" else mounted <= 1, project.mount_log(node)[before:]
    assert_idle(project, node, steps_closed=False)
    left = set(project.open_steps(node)) - _OPEN_STEPS_BEFORE[node.name]
    if left:
        report(f"{backend:6s} killed by {how}: cnd keeps step(s) {sorted(left)} open on {node.name} for good")


def _serving(project) -> list[int]:
    """Processes anywhere on the machine with the project's image in their command line: the FUSE
    daemons, in whatever namespace they run."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(project.image).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _in_private(node) -> dict[int, str]:
    """Processes of ``node`` (its PID namespace) in a mount namespace other than the node's own
    (holders, daemons, ranks that joined), with that namespace."""
    node_pid_ns = os.readlink(f"/proc/{node.pid}/ns/pid_for_children")
    found = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "pid") == node_pid_ns:
                    ns = os.readlink(entry / "ns" / "mnt")
                    if ns != node.mnt_namespace():
                        found[int(entry.name)] = ns
            except OSError:
                pass
    return found


def _private_namespaces(node) -> set[str]:
    return set(_in_private(node).values())


def _step_processes(slurm, node) -> list[int]:
    """What a SIGKILL of the whole step hits on ``node``: everything in its mount namespace but the
    harness's unshare and Slurm's own daemons."""
    return [pid for pid in slurm.processes(node) if _comm(pid) not in ("unshare", "slurmd", "slurmstepd")]


@pytest.mark.parametrize("how", ["sigkill", "scancel"])
def test_a_killed_step_leaves_no_private_mount(slurm, project, backend, how, monkeypatch):
    """In a private namespace a killed step takes its mount with it: no daemon, no namespace, no
    entry in the node's mount table; the next step mounts afresh and leaves the mount base clean."""
    monkeypatch.setitem(slurm.env, "CONDAINER_MOUNT_MODE", "namespace")
    node = slurm.nodes[slurm.default_node]
    ready = slurm.state / f"ns-ready-{backend}-{how}"
    ready.mkdir()
    script = f"import os, time; open('{ready}/' + os.environ['SLURM_PROCID'], 'w').close(); time.sleep(300)"
    srun = subprocess.Popen(["srun", "-n", "8", *cnd_exec(backend, "python", "-c", script)],
                            env=slurm.env, cwd=project.path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
    try:
        _wait_for(lambda: len(os.listdir(ready)) == 8, 60, "8 ranks running")
        assert _serving(project), "a FUSE daemon serves the step"
        assert len(_private_namespaces(node)) == 1, "the 8 ranks share one private namespace"
        assert not project.mounts(node), "the node's mount table never shows it"
        if how == "sigkill":
            # The step's processes, and in private namespaces its holder, daemon and joined ranks.
            for pid in {*_step_processes(slurm, node), *_serving(project), *_in_private(node)}:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        else:
            subprocess.run(["scancel", "-u", "root"], env=slurm.env, check=True, timeout=30)
        srun.wait(60)
    finally:
        if srun.poll() is None:
            os.killpg(srun.pid, signal.SIGKILL)
            srun.wait()
    assert srun.returncode != 0
    _wait_for(lambda: not _serving(project) and not _private_namespaces(node), 15,
              "the daemon and the namespace to go with the step")
    assert not project.mounts(node)
    before = len(project.mount_log(node))
    result = slurm.run(["srun", "-n", "4", *cnd_exec(backend, "python", "-c", SIX_PROBE)], SRUN_TIMEOUT,
                       cwd=project.path)
    assert result.returncode == 0, result.stderr
    check_six_output(result.stdout, project, 4, {node.name: 4})
    assert len(project.mount_log(node)) - before == 1
    _wait_for(lambda: not _serving(project) and not _private_namespaces(node), 15,
              "the step's namespace to end with it")
    base = project.on_node(node, project.mount_base)
    _wait_for(lambda: not [p for p in base.iterdir() if project.uuid in p.name], 15,
              "the mount base to be clean again")


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def test_sbatch_job_with_two_exec_steps(slurm, project, backend):
    node = slurm.nodes[slurm.default_node]
    step = shlex.join(cnd_exec(backend, "python", "-c", SIX_PROBE))
    script = slurm.state / f"job-{backend}.sh"
    script.write_text(f"#!/bin/sh\nset -e\ncd {project.path}\nsrun -n 8 {step}\nsrun -n 8 {step}\n")
    # stderr apart: srun may say "step creation temporarily disabled, retrying" while the first step ends.
    out, err = slurm.state / f"job-{backend}.out", slurm.state / f"job-{backend}.err"
    before = len(project.mount_log(node))
    state, code = slurm.sbatch(script, ["-n", "8", "-o", str(out), "-e", str(err)], SRUN_TIMEOUT)
    assert (state, code) == ("COMPLETED", 0), f"{state} {code}\n{out.read_text()}{err.read_text()}"
    lines = out.read_text().splitlines()
    check_six_output("\n".join(lines[:8]), project, 8, {node.name: 8})
    check_six_output("\n".join(lines[8:]), project, 8, {node.name: 8})
    # Each step mounts exactly once: the first step's last exec unmounted at its end, and a late
    # watcher of the first step leaves the mount to the second step while that one runs.
    new = project.mount_log(node)[before:]
    assert len(new) == 2, f"expected 2 mounts, log says {new}"
    assert_idle(project, node)


def test_three_nodes_each_mount_once(slurm, project, backend):
    nodes = [slurm.nodes[name] for name in MULTI_NODES]
    before = {node.name: len(project.mount_log(node)) for node in nodes}
    start = time.monotonic()
    result = slurm.run(["srun", "-p", "multi", "-N", "3", "-n", "48", "--ntasks-per-node=16",
                        *cnd_exec(backend, "python", "-c", SIX_PROBE)], SRUN_TIMEOUT, cwd=project.path)
    wall = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    check_six_output(result.stdout, project, 48, {name: 16 for name in MULTI_NODES})
    seconds = []
    for node in nodes:
        new = project.mount_log(node)[before[node.name]:]
        assert len(new) == 1, f"expected one mount on {node.name}, log says {new}"
        assert new[0].get("host", node.name) == node.name
        seconds.append(float(new[0]["seconds"]))
        assert_idle(project, node)
    assert not os.path.ismount(project.mountpoint), "a node's mount leaked into this machine's namespace"
    report(f"{backend:6s}  48 ranks, 3 nodes: mount {max(seconds):.3f} s (slowest node), srun {wall:.2f} s")


def test_step_where_only_some_ranks_use_cnd_exec_leaves_nothing(slurm, project, backend):
    """Tasks that never run `cnd exec` never report that they are done: the mount must go all the same."""
    node = slurm.nodes[slurm.default_node]
    only_rank_0 = f"if [ $SLURM_PROCID = 0 ]; then exec {shlex.join(cnd_exec(backend, 'python', '-c', SIX_PROBE))}; fi"
    try:
        result = slurm.run(["srun", "-n", "4", "sh", "-c", only_rank_0], SRUN_TIMEOUT, cwd=project.path)
        assert result.returncode == 0, result.stderr
        check_six_output(result.stdout, project, 1, {node.name: 1})
        assert_idle(project, node)
        assert slurm.fuse_daemons(node) == [], "the FUSE daemon outlived the step"
    finally:
        slurm.run(["srun", "-n", "1", *CND, "umount"], SRUN_TIMEOUT, cwd=project.path)


@pytest.fixture(scope="package")
def project_b(slurm, project):
    """A second project, for a step that uses two environments."""
    return build_six_project(slurm.state / "project-b")


def test_step_using_two_projects_leaves_nothing(slurm, project, project_b, backend):
    """Rank 0 uses project A and is done while rank 1 still works; rank 1 then uses project B.

    Both leave a step watcher behind; each must not take the other for a task of the step.
    """
    node = slurm.nodes["cn3"]
    use = {p: shlex.join(cnd_exec(backend, "python", "-c", "import six", directory=p.path))
           for p in (project, project_b)}
    script = f'if [ $SLURM_PROCID = 0 ]; then {use[project]}; else sleep 2; {use[project_b]}; fi'
    try:
        result = slurm.run(["srun", "-p", "multi", "-w", node.name, "-n", "2", "sh", "-c", script], SRUN_TIMEOUT)
        assert result.returncode == 0, result.stderr
        for p in (project, project_b):
            assert_idle(p, node, steps_closed=False)
    finally:
        for pid in watchers(node):
            os.kill(pid, signal.SIGKILL)
        for p in (project, project_b):
            slurm.run(["srun", "-p", "multi", "-w", node.name, "-n", "1", *CND, "-d", str(p.path), "umount"],
                      SRUN_TIMEOUT)


def test_batch_recipe_of_the_docs(slurm, project):
    """docs/cluster.md's batch job, on 3 nodes: cnd cache once per node, then two `srun cnd exec` steps."""
    nodes = [slurm.nodes[name] for name in MULTI_NODES]
    probe = shlex.quote(SIX_PROBE)
    script = slurm.state / "recipe.sh"
    script.write_text(
        "#!/bin/bash\n"
        "#SBATCH --nodes=3 --ntasks-per-node=4\n"
        "set -e\n"
        f"cd {shlex.quote(str(project.path))}\n"
        # Inside an allocation srun inherits its task count: --ntasks-per-node=1 alone is ignored.
        f'srun --ntasks="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 {shlex.join(CND)} cache\n'
        f"srun {shlex.join(CND)} exec -- python -c {probe}\n"
        f"srun {shlex.join(CND)} exec -- python -c {probe}\n")
    out, err = slurm.state / "recipe.out", slurm.state / "recipe.err"
    before = {node.name: len(project.mount_log(node)) for node in nodes}
    state, code = slurm.sbatch(script, ["-p", "multi", "-o", str(out), "-e", str(err)], SRUN_TIMEOUT)
    assert (state, code) == ("COMPLETED", 0), f"{state} {code}\n{out.read_text()}{err.read_text()}"
    lines = out.read_text().splitlines()
    assert len(lines) == 24, out.read_text() + err.read_text()
    assert "Warning" not in err.read_text(), err.read_text()
    assert err.read_text().count("read into the page cache") == 3, "cnd cache once per node"
    check_six_output("\n".join(lines[:12]), project, 12, {name: 4 for name in MULTI_NODES})
    check_six_output("\n".join(lines[12:]), project, 12, {name: 4 for name in MULTI_NODES})
    for node in nodes:
        assert len(project.mount_log(node)) - before[node.name] == 2, "one mount per node per step"
        assert_idle(project, node)


@pytest.mark.host_mode
def test_a_step_ending_does_not_unmount_for_another_running_step(slurm, project, backend):
    """Two steps of one job at once on a node (srun ... &, as task farms do), both keeping the mount
    for a task still to come: when the first step ends, the second one's late task still finds it."""
    node = slurm.nodes[slurm.default_node]
    use = shlex.join(cnd_exec(backend, "python", "-c", SIX_PROBE))
    step_a = f'if [ $SLURM_PROCID = 0 ]; then {use}; else sleep 4; fi'
    step_b = f'if [ $SLURM_PROCID = 0 ]; then {use}; else sleep 4; {use}; fi'
    script = slurm.state / f"overlap-{backend}.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"cd {shlex.quote(str(project.path))}\n"
        f"srun --overlap -n 2 sh -c {shlex.quote(step_a)} &\n"
        "sleep 1\n"
        f"srun --overlap -n 2 sh -c {shlex.quote(step_b)}\n"
        "wait\n")
    out, err = slurm.state / f"overlap-{backend}.out", slurm.state / f"overlap-{backend}.err"
    before = len(project.mount_log(node))
    state, code = slurm.sbatch(script, ["-n", "2", "-o", str(out), "-e", str(err)], SRUN_TIMEOUT)
    assert (state, code) == ("COMPLETED", 0), f"{state} {code}\n{out.read_text()}{err.read_text()}"
    assert len(out.read_text().splitlines()) == 3, out.read_text() + err.read_text()
    # Step A mounts at 0 s; B's rank 0 reuses it at 1 s, B's rank 1 at 5 s: one mount in all.
    new = project.mount_log(node)[before:]
    assert len(new) == 1, f"expected 1 mount, log says {new}"
    assert_idle(project, node)


def test_srun_of_the_python_launcher_shares_one_mount(slurm, project, backend):
    """`srun -n 16 <project>/bin/python` works like `srun -n 16 cnd exec -- python`."""
    import yaml

    launcher = project.path / "bin" / "python"
    assert launcher.is_file(), "cnd build must write the launchers"
    config = project.path / "condainer.yml"
    original = config.read_text()
    cfg = yaml.safe_load(original)
    cfg["backend"] = backend  # what a launcher mounts with
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        node = slurm.nodes[slurm.default_node]
        before = len(project.mount_log(node))
        start = time.monotonic()
        result = slurm.run(["srun", "-n", "16", str(launcher), "-c", SIX_PROBE], SRUN_TIMEOUT, cwd=slurm.state)
        wall = time.monotonic() - start
        assert result.returncode == 0, result.stderr
        check_six_output(result.stdout, project, 16, {node.name: 16})
        new = project.mount_log(node)[before:]
        assert len(new) == 1, f"16 launchers: expected one mount on {node.name}, log says {new}"
        assert_idle(project, node)
        report(f"{backend:6s} 16 ranks of bin/python, 1 node: srun {wall:.2f} s")
    finally:
        config.write_text(original)
