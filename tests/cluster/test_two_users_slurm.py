"""Two real users of one group run one group-shared project on one Slurm node at the same time.

tests/workflow/test_two_users.py under the real Slurm harness: user A builds the project in a
group-shared directory (setgid 2770, umask 027) on the "shared file system" (the cluster's state
directory: every node sees it); then A and B each submit a step to the same node with srun, whose
rank 0 runs the launcher <project>/bin/python and rank 1 `cnd exec -- python`. The four tasks wait
for each other, so they provably run at once. Each user's two tasks must share one private
namespace (one per node, user and step) and the users' must differ; the node's mount table must
show no mount of the image; once the steps are over nothing may be left: no process of either user,
no FUSE daemon, no record in /dev/shm, nothing in the node's mount base (its own /tmp).

The users are cndslurm-a and -b, not the workflow test's cndtest users, so that one test cannot
kill (or count) the other's processes. A's condainer is a venv under A's private home, so B's
launcher cannot start it and must use B's own `cnd` on PATH. /dev/fuse is often root-only on CI
machines: a world-usable copy of the device node is bind-mounted over /dev/fuse in the node's
mount namespace only (as a cluster's /dev/fuse is), and always unmounted afterwards.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import time

import pytest

from condainer.node import mount_mode
from condainer.node import records as registry
from tests.helpers.users import SYSTEM_PYTHON, ensure_users, site_packages

from .conftest import REPO
from .project import Project
from .slurm import die_with_parent

USERS, GROUP = ("cndslurm-a", "cndslurm-b"), "cndslurm-lab"
SRUN_TIMEOUT = 180
LEFT_WITHIN = 20.0  # after the steps: the holders linger 1 s, then their janitors tidy up
TOOLS = ("useradd", "groupadd", "nsenter", "mknod", "squashfuse_ll")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in TOOLS) or not os.path.exists(SYSTEM_PYTHON)
    or mount_mode.problem() is not None,
    reason="needs root (to create two users and give the node a usable /dev/fuse), useradd, nsenter, mknod, "
           "squashfuse_ll, /usr/bin/python3 (a Python other users may run) and unprivileged user namespaces",
)

# Each task notes its mount namespace, then waits until the test lets all four go: they run at the
# same time while the test looks at the node.
TASK_CODE = r"""
import os, sys, time, six
how, ready = sys.argv[1], os.environ["CND_READY"]
name = os.path.join(ready, f"{os.getuid()}-{how}")
with open(name + ".tmp", "w") as fh:
    fh.write(os.readlink("/proc/self/ns/mnt"))
os.rename(name + ".tmp", name)
deadline = time.monotonic() + 120
while not os.path.exists(os.path.join(ready, "go")) and time.monotonic() < deadline:
    time.sleep(0.05)
print(how, os.getuid(), six.__name__, six.__file__)
"""
# Rank 0 through the launcher, rank 1 through `cnd exec` (the user's own cnd, from PATH).
TASK = ('if [ "$SLURM_PROCID" = 0 ]; then exec "$CND_PROJECT/bin/python" -c "$CND_CODE" launcher; '
        'else exec cnd exec -- python -c "$CND_CODE" exec; fi')


@pytest.fixture
def fuse_for_users(slurm):
    """The default node with a /dev/fuse every user may open, in its own mount namespace only."""
    node = slurm.nodes[slurm.default_node]
    assert not _dev_fuse_mounts(node), "the node's /dev/fuse is already a mount point"
    host_fuse_mode = os.stat("/dev/fuse").st_mode
    # In slurmd's mount and PID namespaces: umount reads /proc/self, which only the node's /proc has.
    on_node = ["nsenter", "-t", str(_slurmd_pid(slurm, node)), "-m", "-p"]
    devdir = slurm.state / "two-users-dev"
    devdir.mkdir(mode=0o700)  # the copy is reached through the bind mount only
    try:
        subprocess.run(["mknod", "-m", "666", str(devdir / "fuse"), "c", "10", "229"], check=True)
        subprocess.run([*on_node, "mount", "--bind", str(devdir / "fuse"), "/dev/fuse"], check=True, timeout=30)
        yield node
    finally:
        deadline = time.monotonic() + 30
        while _dev_fuse_mounts(node):
            done = subprocess.run([*on_node, "umount", "/dev/fuse"], capture_output=True, text=True, timeout=30)
            if done.returncode:
                if time.monotonic() > deadline:
                    raise AssertionError(f"cannot unmount the node's /dev/fuse: {done.stderr}")
                time.sleep(0.5)
        shutil.rmtree(devdir)
    assert os.stat("/dev/fuse").st_mode == host_fuse_mode, "this machine's own /dev/fuse is untouched"


@pytest.fixture
def shared(slurm):
    """Where the users' project, homes and tools live: the cluster's state directory, which every
    node sees and other users may enter (mode 0755); removed afterwards with the users' leftovers."""
    uids = ensure_users(USERS, GROUP)
    path = slurm.state / "two-users"
    path.mkdir(mode=0o755)
    try:
        yield path, uids
    finally:
        subprocess.run(["scancel", "--quiet", "-u", ",".join(USERS)], env=slurm.env, timeout=30,
                       capture_output=True)
        for pid in _user_processes(set(uids.values())):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for uid in uids.values():
            shutil.rmtree(registry.registry_dir(uid), ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)


def test_two_users_run_one_image_on_one_node_at_once(slurm, fuse_for_users, shared):
    """Issue 22's "two users, also under Slurm": private mounts keep users of one project on one node
    apart, so neither blocks the other, the node shows neither, and both leave nothing behind."""
    node = fuse_for_users
    root, uids = shared
    a = USERS[0]
    lab = grp.getgrnam(GROUP).gr_gid
    project_dir, ready, site = root / "project", root / "ready", root / "site"
    site_packages(site)
    project_dir.mkdir()
    os.chown(project_dir, uids[a], lab)
    os.chmod(project_dir, 0o2770)
    ready.mkdir()
    os.chmod(ready, 0o1777)
    envs = {}
    for user in USERS:
        home, bindir = root / f"home-{user}", root / f"bin-{user}"
        home.mkdir(mode=0o700)  # A's condainer lives here: B cannot start it
        os.chown(home, uids[user], uids[user])
        bindir.mkdir()
        (bindir / "cnd").write_text(f'#!/bin/sh\nexec {SYSTEM_PYTHON} -m condainer "$@"\n')
        os.chmod(bindir / "cnd", 0o755)
        envs[user] = {"HOME": str(home), "USER": user, "LOGNAME": user, "LANG": "C.UTF-8",
                      "PATH": f"{bindir}:/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{site}",
                      "SLURM_CONF": str(slurm.conf), "CONDAINER_NS_LINGER": "1",
                      "CND_PROJECT": str(project_dir), "CND_READY": str(ready), "CND_CODE": TASK_CODE}
    # A's own venv of the system Python, under A's private home: what A's launchers name.
    venv_python = root / f"home-{a}" / "venv" / "bin" / "python"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv_python.parents[1])], check=True)
    subprocess.run(["chown", "-R", f"{uids[a]}:{uids[a]}", str(venv_python.parents[1])], check=True)

    def as_user(user: str) -> dict:
        """Popen arguments: USER with its groups, umask 027 and environment, in the project."""
        return dict(user=uids[user], group=pwd.getpwnam(user).pw_gid, extra_groups=[lab], umask=0o027,
                    env=envs[user], cwd=project_dir)

    # A builds the project on the "login node" (this machine): a pip project of six.
    init = subprocess.run([str(venv_python), "-m", "condainer", "init"], capture_output=True, text=True,
                          timeout=300, **as_user(a))
    assert init.returncode == 0, init.stdout + init.stderr
    (project_dir / "environment.yml").unlink(missing_ok=True)
    (project_dir / "requirements.txt").write_text("six\n")
    build = subprocess.run([str(venv_python), "-m", "condainer", "-q", "build", "--backend", "native"],
                           capture_output=True, text=True, timeout=600, **as_user(a))
    assert build.returncode == 0, build.stdout + build.stderr
    project = Project(project_dir)
    assert project.mount_base == "/tmp", "the mount base is the node's own /tmp"

    # A's and B's steps on the same node at once, each with its launcher and its `cnd exec`.
    sruns: dict[str, tuple[subprocess.Popen, pathlib.Path]] = {}
    try:
        for user in USERS:
            out = root / f"srun-{user}.out"
            with open(out, "w") as fh:
                sruns[user] = (subprocess.Popen(
                    ["srun", "-w", node.name, "-n", "2", "-J", f"two-users-{user}", "sh", "-c", TASK],
                    stdout=fh, stderr=subprocess.STDOUT, preexec_fn=die_with_parent, **as_user(user)), out)
        tasks = [f"{uids[user]}-{how}" for user in USERS for how in ("launcher", "exec")]
        _wait_for(lambda: all((ready / t).exists() for t in tasks), 120, "the 4 tasks to run", sruns.values())

        # All four run now. Each user's tasks share a private namespace; the users' differ.
        spaces = {t: (ready / t).read_text() for t in tasks}
        for user in USERS:
            assert spaces[f"{uids[user]}-launcher"] == spaces[f"{uids[user]}-exec"], \
                (user, spaces, "one private namespace per node, user and step")
        assert len(set(spaces.values())) == 2 and node.mnt_namespace() not in spaces.values(), \
            (spaces, node.mnt_namespace(), "each user has a namespace of their own, not the node's")
        assert not _image_mounts(node, project), "the node's mount table never shows the image"
        for user in USERS:
            records = [r for r in _records(uids[user]) if r.startswith(f"{project.uuid}-{node.name}-")
                       and not r.endswith((".lock", ".starting"))]
            assert len(records) == 1, (user, _records(uids[user]), "one record: this user's step on this node")
        serving = {_proc_uid(pid) for pid in _fuse_users(node)}
        assert set(uids.values()) <= serving, (serving, "a FUSE daemon of each user serves its namespace")

        (ready / "go").touch()
        for proc, _out in sruns.values():
            proc.wait(SRUN_TIMEOUT)
    finally:
        if ready.is_dir():
            (ready / "go").touch()
        for proc, _out in sruns.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    for user, (proc, out) in sruns.items():
        text = out.read_text()
        assert proc.returncode == 0, (user, text)
        lines = sorted(line.split() for line in text.splitlines() if line.strip())
        assert [line[:3] for line in lines] == [["exec", str(uids[user]), "six"],
                                                ["launcher", str(uids[user]), "six"]], (user, text)
        assert all(line[3].startswith(project.mountpoint + "/") for line in lines), (user, text, "six from the image")
        mounts = [line for line in (root / f"home-{user}" / ".cache" / "condainer" / "mounts.log").read_text().splitlines()
                  if f"uuid={project.uuid}" in line and f"host={node.name}" in line]
        assert len(mounts) == 1 and "mode=namespace" in mounts[0], (user, mounts, "one private mount per user")

    # Afterwards nothing is left on the node, nor anywhere on this machine.
    base = project.on_node(node, project.mount_base)

    def leftovers() -> list[str]:
        found = []
        if left := _left_behind(set(uids.values()), _slurmd_pid(slurm, node)):
            found.append(f"processes of the users: {left}")
        if daemons := [pid for pid in _fuse_users(node) if _proc_uid(pid) in uids.values()]:
            found.append(f"FUSE daemons of the users on {node.name}: {daemons}")
        if mounts := _image_mounts(node, project):
            found.append(f"mounts of the image on {node.name}: {mounts}")
        if ours := [p.name for p in base.iterdir() if project.uuid in p.name or _uid(p) in uids.values()]:
            found.append(f"in the node's mount base {project.mount_base}: {ours}")
        for user in USERS:
            if os.path.exists(registry.registry_dir(uids[user])):
                found.append(f"{user}'s record directory: {_records(uids[user])}")
        return found

    deadline = time.monotonic() + LEFT_WITHIN
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftovers(), f"left {LEFT_WITHIN} s after the steps ended: {leftovers()}"


def _dev_fuse_mounts(node) -> list[str]:
    return [line for line in node.mountinfo().splitlines() if line.split()[4] == "/dev/fuse"]


def _image_mounts(node, project) -> list[str]:
    """Lines of the node's own mount table at the project's mount point or naming its uuid."""
    return [line for line in node.mountinfo().splitlines()
            if project.uuid in line or line.split()[4].startswith(project.mountpoint)]


def _slurmd_pid(slurm, node) -> int:
    """The node's slurmd (PID 1 of its PID namespace), as this machine numbers it."""
    for pid in slurm.processes(node):
        with contextlib.suppress(OSError):
            if pathlib.Path(f"/proc/{pid}/comm").read_text().strip() == "slurmd":
                return pid
    raise AssertionError(f"no slurmd runs on {node.name}")


def _uid(path: os.PathLike) -> int | None:
    """The owner of PATH, None once it is gone."""
    try:
        return os.lstat(path).st_uid
    except OSError:
        return None


def _proc_uid(pid: int | str) -> int | None:
    """The real uid of process PID (/proc/PID itself is root's when the process is not dumpable)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


def _user_processes(uids: set[int]) -> dict[int, tuple[str, int]]:
    """{pid: (state, parent pid)} of every process on this machine (any namespace) of a user in UIDS."""
    found = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit() and _proc_uid(entry.name) in uids:
            with contextlib.suppress(OSError, IndexError, ValueError):
                state, ppid = (entry / "stat").read_text().rsplit(") ", 1)[1].split()[:2]
                found[int(entry.name)] = (state, int(ppid))
    return found


def _left_behind(uids: set[int], node_init: int) -> list[str]:
    """The users' processes still there, but for the dead ones whose parent is the node's PID 1.

    Holders, janitors and daemons detach from the task, so when they end they are orphans of the
    node's init, which reaps them on a real node. Here slurmd is PID 1 of the node's PID namespace
    and never reaps them: such zombies have ended and hold nothing (no mount, no file, no lock).
    """
    left = []
    for pid, (state, ppid) in _user_processes(uids).items():
        if state == "Z" and ppid == node_init:
            continue
        with contextlib.suppress(OSError):
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            left.append(f"{pid} (state {state}, parent {ppid}, uid {_proc_uid(pid)}): {cmdline[:120]}")
    return left


def _fuse_users(node) -> list[int]:
    """Processes of ``node`` (its PID namespace, whatever their mount namespace) with /dev/fuse open."""
    node_pids = os.readlink(f"/proc/{node.pid}/ns/pid_for_children")
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "pid") == node_pids and any(
                        os.readlink(fd) == "/dev/fuse" for fd in (entry / "fd").iterdir()):
                    found.append(int(entry.name))
    return found


def _records(uid: int) -> list[str]:
    """What user UID has in its node-local record directory (/dev/shm/.condainer-<uid>), or []."""
    directory = registry.registry_dir(uid)
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def _wait_for(predicate, timeout: float, what: str, sruns=()) -> None:
    """Wait for PREDICATE; fail at once, with its output, if one of SRUNS (Popen, output file) ends."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        for proc, out in sruns:
            if proc.poll() is not None:
                raise AssertionError(f"srun ended ({proc.returncode}) while waiting for {what}: {out.read_text()}")
        time.sleep(0.1)
