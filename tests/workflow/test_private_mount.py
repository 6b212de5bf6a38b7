"""The image mounted in a private user+mount namespace that commands join (condainer/private_mount.py).

What a user relies on: the host's mount table never shows the mount; the command runs as the user,
in the directory it was started from; concurrent commands share one mount; a launcher's later
starts join it without a Python of cnd's own; nothing is left once the last command ends, a
SIGKILL of everything included; a rebuilt image is mounted afresh.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from condainer import mounts
from condainer.node import mount_mode, private_mount
from condainer.node import records as registry

from .conftest import BACKENDS, backend_param, cnd, mountpoint_of

pytestmark = pytest.mark.skipif(mount_mode.problem() is not None,
                                reason=f"no private namespaces here: {mount_mode.problem()}")

REPORT = ("import json, os, sys; print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'cwd': os.getcwd(), "
          "'exe': sys.executable, 'mounts': open('/proc/self/mountinfo').read()}))")


def uuid_of(project: Path) -> str:
    return mountpoint_of(project).name.removeprefix("condainer-")


def records(project: Path) -> list[Path]:
    d = Path(registry.registry_dir())
    return sorted(p for p in d.glob(f"{uuid_of(project)}-*") if not p.name.endswith(".lock")) if d.is_dir() else []


def holders(project: Path) -> list[int]:
    """Processes that serve PROJECT's image in a namespace: holders (by their records) and daemons."""
    image = str(project / f"{uuid_of(project)}.squashfs")
    pids = {int(p) for p in subprocess.run(["pgrep", "-f", image], capture_output=True, text=True).stdout.split()}
    for path in records(project):
        record = registry.Record.read(str(path))
        if record is not None and record.alive():
            pids.add(record.pid)
    return sorted(pids)


def wait_gone(project: Path, timeout: float = 10) -> bool:
    """True once no holder, daemon or record of PROJECT is left (they leave by themselves)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not holders(project) and not records(project):
            return True
        time.sleep(0.05)
    return False


def mount_count(project: Path) -> int:
    log = Path(os.environ.get("CONDAINER_LOG_DIR") or Path.home() / ".cache" / "condainer") / "mounts.log"
    if not log.exists():
        return 0
    return sum(f"uuid={uuid_of(project)} " in line and "mode=namespace" in line for line in log.read_text().splitlines())


@pytest.fixture(autouse=True)
def _namespace_mode(monkeypatch):
    """These tests are about the private mount, whatever mode the rest of the suite runs in."""
    monkeypatch.setenv("CONDAINER_MOUNT_MODE", "namespace")


@pytest.fixture
def ns_project(pip_project):
    """The built pip project, with no private mount of it left from an earlier test."""
    assert wait_gone(pip_project), "an earlier test left a holder running"
    yield pip_project
    if not wait_gone(pip_project):
        for pid in holders(pip_project):
            os.kill(pid, signal.SIGKILL)
        pytest.fail("a holder outlived its last command")


def exec_report(project: Path, *extra: str, cwd: Path | None = None, **kw) -> dict:
    result = cnd("-d", str(project), "exec", *extra, "--", "python", "-c", REPORT, cwd=cwd or project, **kw)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("pip_project", [backend_param(b) for b in BACKENDS], indirect=True)
def test_exec_mounts_privately_as_the_user_and_leaves_nothing(ns_project, tmp_path):
    mp = mountpoint_of(ns_project)
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    report = exec_report(ns_project, "--backend", "native" if "native" in ns_project.name else "python", cwd=workdir)
    assert report["exe"] == f"{mp}/bin/python"
    assert report["cwd"] == str(workdir)
    assert (report["uid"], report["gid"]) == (os.getuid(), os.getgid())
    assert f" {mp} " in report["mounts"], "the command must see the image mounted"
    assert mounts.find_mount(mp) is None, "the host's mount table must never show it"
    assert wait_gone(ns_project), "the holder must leave once the last command is done"
    deadline = time.monotonic() + 5  # its janitor removes the directory right after it
    while mp.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not mp.exists(), "the mount point directory goes with the last user"
    left = [p.name for p in Path(registry.registry_dir()).glob(f"{uuid_of(ns_project)}-*")] \
        if Path(registry.registry_dir()).is_dir() else []
    assert not left, f"the record and its lock go too: {left}"


@pytest.mark.parametrize("pip_project", [backend_param(b) for b in BACKENDS], indirect=True)
def test_concurrent_commands_share_one_private_mount(ns_project):
    before = mount_count(ns_project)
    code = "import six, time; time.sleep(1.0); print(open('/proc/self/ns/mnt').name and __import__('os').readlink('/proc/self/ns/mnt'))"

    def one(_):
        return cnd("exec", "--", "python", "-c", code, cwd=ns_project)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]
    assert len({r.stdout.strip() for r in results}) == 1, "all eight ran in one namespace"
    assert mount_count(ns_project) - before == 1, "one mount for eight concurrent commands"


@pytest.mark.parametrize("pip_project", [backend_param(b) for b in BACKENDS], indirect=True)
def test_sigkill_of_everything_leaves_no_mount_and_the_next_command_works(ns_project):
    mp = mountpoint_of(ns_project)
    proc = subprocess.Popen([sys.executable, "-m", "condainer", "exec", "--", "python", "-c",
                             "import time; print('up', flush=True); time.sleep(60)"],
                            cwd=ns_project, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "up"
    serving = holders(ns_project)
    assert serving, "a holder and its daemon serve the mount"
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in serving:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while holders(ns_project) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not holders(ns_project), "nothing of the namespace may survive"
    assert mounts.find_mount(mp) is None
    # What a SIGKILL may leave: the record of a dead holder and the empty mount point directory.
    assert not mp.exists() or not any(mp.iterdir())
    assert exec_report(ns_project)["exe"] == f"{mp}/bin/python", "the next command mounts afresh"
    assert wait_gone(ns_project)
    deadline = time.monotonic() + 5
    while mp.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not mp.exists(), "the next use removes what the SIGKILL left"


def test_a_rebuilt_image_gets_a_new_private_mount(ns_project):
    holder = subprocess.Popen([sys.executable, "-m", "condainer", "exec", "--", "python", "-c",
                               "import time; print('up', flush=True); time.sleep(30)"],
                              cwd=ns_project, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "up"
        first = [r.read_text() for r in records(ns_project)]
        image = ns_project / f"{uuid_of(ns_project)}.squashfs"
        copy = image.with_suffix(".new")
        copy.write_bytes(image.read_bytes())
        os.replace(copy, image)  # what a build does: a new file renamed over the old one
        exec_report(ns_project)
        second = [r.read_text() for r in records(ns_project)]
        assert first and second and first != second, "a new holder for the new image"
    finally:
        holder.kill()
        holder.wait()


def test_umount_retires_the_private_mount(ns_project):
    exec_report(ns_project, env={**os.environ, "CONDAINER_NS_LINGER": "30"})
    time.sleep(1.5)
    assert records(ns_project), "a 30 s linger keeps the idle namespace"
    result = cnd("umount", cwd=ns_project)
    assert result.returncode == 0, result.stderr
    assert "takes no new commands" in result.stderr
    assert wait_gone(ns_project, timeout=5), "cnd umount ends an idle private mount at once"


def test_launcher_joins_without_starting_cnd(ns_project, tmp_path):
    """Once the node's namespace exists, a launcher start is sh, nsenter and the command: no Python
    of cnd's own, and only a few file system calls outside the node's system, /tmp and /proc."""
    launcher = ns_project / "bin" / "python"
    keeper = subprocess.Popen([str(launcher), "-c", "import time; print('up', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert keeper.stdout.readline().strip() == "up"
        trace = tmp_path / "trace"
        result = subprocess.run(["strace", "-f", "-qq", "-o", str(trace), "-e", "trace=%file,execve",
                                 str(launcher), "-c", "import six; print(six.__file__)"],
                                capture_output=True, text=True, cwd=tmp_path, timeout=60,
                                env={**os.environ, "PWD": str(tmp_path)})  # as a shell started there has it
        assert result.returncode == 0, result.stderr
        env_python = f"{mountpoint_of(ns_project)}/bin/python"
        assert result.stdout.startswith(str(mountpoint_of(ns_project)))
        lines = trace.read_text().splitlines()
        programs = [line.split('"')[1] for line in lines if "execve(" in line and "= 0" in line]
        assert [os.path.basename(p) for p in programs] == ["python", "nsenter", "python"], programs
        assert programs[0] == str(launcher) and programs[2] == env_python
        # What the launcher adds: every call before the environment's python starts. Of those, the
        # ones outside the node's own system, /tmp, /dev/shm and /proc land on the parallel file
        # system on a cluster (the project directory, here the launcher itself and the image).
        before = lines[: next(i for i, line in enumerate(lines) if f'execve("{env_python}"' in line)]
        local = ("/tmp/", "/proc/", "/dev/", "/usr/", "/lib", "/etc/", "/sys/", "/bin/", "/selinux", str(tmp_path))
        shared = (str(ns_project), str(Path(private_mount.__file__).parents[2]))  # project, cnd's installation
        paths = [line.split('"')[1] for line in before if '"' in line]
        outside = [p for p in paths if p.startswith(shared) or not p.startswith(local) and p not in ("", ".")]
        assert len(outside) <= 5, outside
        assert str(launcher) in outside, "the count sees the launcher's own file"
    finally:
        keeper.kill()
        keeper.wait()


def test_host_mode_forced_uses_the_host_mount_table(pip_project):
    mp = mountpoint_of(pip_project)
    code = "import os; print(os.readlink('/proc/self/ns/mnt'))"
    result = cnd("exec", "--mount-mode", "host", "--", "python", "-c", code, cwd=pip_project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == os.readlink("/proc/self/ns/mnt"), "no namespace in host mode"
    assert mounts.find_mount(mp) is None, "the last exec unmounted"
    status = cnd("status", "--json", cwd=pip_project, env={**os.environ, "CONDAINER_MOUNT_MODE": "host"})
    assert json.loads(status.stdout)["mount_mode"] == "host"


def test_launcher_does_not_join_a_reused_pid(ns_project, tmp_path):
    """A record left by a SIGKILLed step names a pid that a later, unrelated process of the user may
    reuse: the launcher must see that the pid is not the holder, and mount afresh instead of joining
    that process's namespaces."""
    mp = mountpoint_of(ns_project)
    impostor = subprocess.Popen(["sleep", "60"])
    record = Path(registry.registry_dir()) / registry.record_name(uuid_of(ns_project))
    try:
        record.parent.mkdir(mode=0o700, exist_ok=True)
        record.write_text(f"{impostor.pid} 0 0:0:0 {mp}\n")  # newer than the image, as a real one is
        result = subprocess.run([str(ns_project / "bin" / "python"), "-c", REPORT], capture_output=True,
                                text=True, cwd=tmp_path, timeout=60)
        assert result.returncode == 0, result.stderr
        seen = json.loads(result.stdout)
        assert seen["exe"] == f"{mp}/bin/python" and f" {mp} " in seen["mounts"]
        holder = registry.Record.read(str(record))
        assert holder is not None and holder.pid != impostor.pid and holder.alive(), "a new holder took the record"
    finally:
        impostor.kill()
        impostor.wait()


def test_orphaned_lock_files_are_swept(tmp_path):
    """A step killed with SIGKILL leaves its record's lock (and a launcher's ``.starting``) behind:
    the next start on the node removes those nobody holds, and keeps a held one and a live record's."""
    import fcntl

    from condainer.project.layout import hostname

    here = hostname()
    orphans = [tmp_path / f"aaaa-{here}-7.0.lock", tmp_path / f"bbbb-{here}.starting"]
    held = tmp_path / f"cccc-{here}.lock"
    with_record = tmp_path / f"dddd-{here}.lock"
    elsewhere = tmp_path / "eeee-othernode.lock"
    for path in (*orphans, held, with_record, elsewhere):
        path.write_text("")
    live = tmp_path / f"dddd-{here}"
    live.write_text(registry.Record(os.getpid(), registry.start_time(os.getpid()), "0:0:0", "/x").line())
    fd = os.open(held, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        registry.sweep_dead_records(str(tmp_path))
    finally:
        os.close(fd)
    assert not any(p.exists() for p in orphans)
    assert held.exists() and with_record.exists() and live.exists()
    assert elsewhere.exists(), "another node's files (a shared /dev/shm of simulated nodes) are left alone"
