"""The node-local record of a user's private mount: one file per node, user, project and Slurm job
step, ``/dev/shm/.condainer-<uid>/<uuid>-<host>[-<job>.<step>]``, holding one line ``PID START
IMAGE-ID MOUNTPOINT`` of the holder (holder.py) that commands join, and its lock. Read by cnd and,
in sh, by the launchers (launchers.py); never in the mount base, which stays clean.
"""

from __future__ import annotations

import fcntl
import os

from condainer.errors import CondainerError
from condainer.node.sessions import process_start_time as start_time
from condainer.project.layout import Layout, read_file

REGISTRY_ROOT = "/dev/shm"
# The holder keeps its record open on this descriptor, so that a launcher's shell proves with one
# stat (`[ /proc/PID/fd/N -ef RECORD ]`) that PID is the holder and not a reused pid; reading
# /proc/PID/stat in sh costs a read call per byte.
RECORD_FD = 99


def registry_dir(uid: int | None = None) -> str:
    """This user's node-local directory of records (never the mount base: it stays clean)."""
    return os.path.join(REGISTRY_ROOT, f".condainer-{os.getuid() if uid is None else uid}")


def record_name(uuid: str, environ: dict[str, str] | None = None) -> str:
    """UUID-HOST, and -JOB.STEP inside a Slurm job step (one namespace per step: it ends with it).
    The host name keeps nodes apart where /dev/shm is shared (simulated nodes in tests)."""
    from condainer.project.layout import hostname

    env = os.environ if environ is None else environ
    step = env.get("SLURM_STEP_ID")
    name = f"{uuid}-{hostname()}"
    return f"{name}-{env.get('SLURM_JOB_ID')}.{step}" if step else name


def image_id(image: str) -> str:
    """What identifies the image file: a rebuilt image (a new file renamed over it) differs."""
    st = os.stat(image)
    return f"{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}"


class Record:
    """One holder, as its record file says: ``PID START IMAGE-ID MOUNTPOINT``."""

    __slots__ = ("pid", "start", "image", "mountpoint")

    def __init__(self, pid: int, start: str, image: str, mountpoint: str) -> None:
        self.pid, self.start, self.image, self.mountpoint = pid, start, image, mountpoint

    def line(self) -> str:
        return f"{self.pid} {self.start} {self.image} {self.mountpoint}\n"

    @classmethod
    def read(cls, path: str) -> Record | None:
        data = read_file(path)
        if not data:
            return None
        parts = data.decode("utf-8", "surrogateescape").rstrip("\n").split(" ", 3)
        if len(parts) != 4 or not parts[0].isdigit():
            return None
        return cls(int(parts[0]), parts[1], parts[2], parts[3])

    def alive(self) -> bool:
        return start_time(self.pid) == self.start


def record_path(layout: Layout) -> str:
    return os.path.join(registry_dir(), record_name(layout.uuid))


class Lock:
    """``with Lock(path):`` holds an exclusive flock of PATH in this user's record directory."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> Lock:
        from condainer.node.safedir import lock_exclusive

        self.fd = lock_exclusive(self.path, what="record directory")
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def sweep_dead_records(directory: str) -> None:
    """Remove the records of this node's holders that were killed (a job step ends with SIGKILL,
    and its record's name, with the step in it, is never used again), and the lock and ``.starting``
    files that such a step left without a record: those nobody holds a flock on any more."""
    from condainer.project.layout import hostname

    try:
        names = set(os.listdir(directory))
    except OSError:
        return
    here = f"-{hostname()}"
    for name in names:
        if here not in name or name.startswith("."):
            continue
        base, suffix = os.path.splitext(name)
        if suffix in (".lock", ".starting"):
            if base not in names:
                _unlink_if_unlocked(os.path.join(directory, name))
            continue
        record = Record.read(os.path.join(directory, name))
        if record is not None and not record.alive():
            for suffix in ("", ".starting", ".lock"):
                unlink(os.path.join(directory, name + suffix))


def _unlink_if_unlocked(path: str) -> None:
    """Remove the lock file PATH unless a process holds a flock on it. Safe for a lock taken with
    safedir.lock_exclusive (it starts over on a removed file); a launcher waiting on a removed
    ``.starting`` file only starts condainer itself, which serializes on the record's lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_nlink and os.path.samestat(os.fstat(fd), os.stat(path)):
            os.unlink(path)
    except OSError:
        pass  # held, or gone meanwhile
    finally:
        os.close(fd)


def tidy_registry(record_path: str) -> None:
    """Remove the record's lock file and this user's record directory once nothing is in use."""
    try:
        with Lock(record_path + ".lock"):
            if os.path.exists(record_path):
                return
            unlink(record_path + ".starting")
            unlink(record_path + ".lock")
    except CondainerError:
        return
    try:
        os.rmdir(os.path.dirname(record_path))
    except OSError:
        pass


def unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
