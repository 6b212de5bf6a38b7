"""The per-node reference count of `cnd exec` sessions sharing one mount.

All ranks of a job step on one node run `cnd exec` at once: the first mounts, the others reuse the
mount, the last one unmounts. The count lives in a private state directory on the node (next to the
mount point) as one file per running exec, named by pid and holding the process start time, so an
exec killed with SIGKILL is recognised as gone (pid dead, or reused by another process) and dropped.
Every change happens under an exclusive flock of one lock file. When the last exec unmounts, the
directory goes too (remove_if_idle), so a shared node's /tmp does not collect one per project, user
and node; the mount and unmount log lines go to the user's log directory instead.

Every rank passes here, so this module uses the standard library's os and fcntl only, and plain
string paths.
"""

import fcntl
import os
import time

from condainer.errors import BuildError
from condainer.node.safedir import ensure_private_dir, lock_exclusive
from condainer.project.layout import hostname, log_dir, read_file


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of PID (field 22 of /proc/PID/stat), or None if it is gone."""
    data = read_file(f"/proc/{pid}/stat")
    if data is None:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


class build_lock:  # noqa: N801 - used as `with build_lock(dir):`, like a function
    """Hold the node-local build lock of a project (``build.lock`` in its state directory) or fail at
    once naming the pid that holds it. The kernel drops the lock when its holder dies, so a killed
    build never blocks the next one."""

    def __init__(self, state_dir: os.PathLike | str, uuid: str = "-") -> None:
        self.dir = os.fspath(state_dir)
        self.uuid = uuid  # the project's, named in the log lines
        self.fd = -1

    def __enter__(self) -> None:
        directory = ensure_private_dir(self.dir, what="state directory")
        fd = os.open(os.path.join(directory, "build.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BuildError(f"another `cnd build` of this project is running on this node (pid {pid})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # releases the build lock first: remove_if_idle skips a held one
        sessions = NodeSessions(self.dir)
        with sessions.locked():
            sessions.remove_if_idle()  # a build leaves nothing in the node's /tmp either


class _Locked:
    """``with sessions.locked():`` holds the session lock; closing the descriptor releases it, also
    when we are killed."""

    def __init__(self, sessions: "NodeSessions") -> None:
        self.sessions = sessions
        self.fd = -1

    def __enter__(self) -> "NodeSessions":
        s = self.sessions
        # The directory is checked once per process: nobody else can replace what sits inside our
        # own 0700 directory.
        self.fd = lock_exclusive(os.path.join(s.dir, "lock"), what="state directory", dir_checked=s.checked)
        s.checked = True
        return s

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


class NodeSessions:
    """The execs using one mount on this node; use methods only inside ``with sessions.locked():``."""

    def __init__(self, state_dir: os.PathLike | str, uuid: str = "-") -> None:
        self.dir = os.fspath(state_dir)
        self.uuid = uuid  # the project's, named in the log lines
        self.users = os.path.join(self.dir, "users")
        self.pin_file = os.path.join(self.dir, "pinned")
        self.checked = False  # the directories were made or checked by this process

    def locked(self) -> _Locked:
        return _Locked(self)

    def add(self, pid: int) -> None:
        start = process_start_time(pid) or ""
        path = os.path.join(self.users, str(pid))
        try:
            _write(path, start)
        except FileNotFoundError:  # the first exec here, or the last one's clean-up removed it
            os.mkdir(self.users, 0o700)
            _write(path, start)

    def remove(self, pid: int) -> None:
        _unlink(os.path.join(self.users, str(pid)))

    def active(self) -> list[int]:
        """Pids of execs still running; entries of dead or reused pids are removed."""
        alive = []
        try:
            names = os.listdir(self.users)
        except FileNotFoundError:  # made by the first add()
            names = []
        for name in names:
            path = os.path.join(self.users, name)
            data = read_file(path)
            if data is None or not name.isdigit():
                _unlink(path)
                continue
            pid, recorded = int(name), data.decode(errors="replace")
            if process_start_time(pid) == recorded and recorded:
                alive.append(pid)
            else:
                _unlink(path)
        return sorted(alive)

    @property
    def pinned(self) -> bool:
        """True after an explicit `cnd mount`: execs then leave the mount in place."""
        return os.path.exists(self.pin_file)

    def pin(self, on: bool) -> None:
        if on:
            _write(self.pin_file, "")
        else:
            _unlink(self.pin_file)

    def step_done(self, step: str, local_id: str, expected: int) -> bool:
        """Record that task LOCAL_ID of Slurm step STEP finished here; True once all EXPECTED have."""
        d = os.path.join(self.dir, "steps", step)
        os.makedirs(d, mode=0o700, exist_ok=True)
        _write(os.path.join(d, local_id), "")
        if len(os.listdir(d)) >= expected:
            self.forget_step(step)
            return True
        return False

    def open_steps(self) -> list[str]:
        """Job steps with tasks that finished an exec here and that are not known to be over."""
        d = os.path.join(self.dir, "steps")
        try:
            return sorted(e.name for e in os.scandir(d) if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def forget_step(self, step: str) -> None:
        """Drop what we recorded about STEP (it is over on this node)."""
        d = os.path.join(self.dir, "steps", step)
        if os.path.isdir(d):
            for name in os.listdir(d):
                _unlink(os.path.join(d, name))
            os.rmdir(d)
        _unlink(os.path.join(self.dir, "steps", f"{step}.reaper"))

    def remove_if_idle(self) -> bool:
        """Remove the state directory when nothing in it is live: no exec running, not pinned, no
        job step waiting, no build running; True when it is gone. Call under the lock, after the
        mount point is gone: processes waiting for the lock find their lock file removed and start
        over (see _Locked)."""
        if self.active() or self.pinned or self.open_steps():
            return False
        build = os.path.join(self.dir, "build.lock")
        try:
            fd = os.open(build, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            pass
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a `cnd build` of this project runs on this node
            finally:
                os.close(fd)
            _unlink(build)
        for name in ("mounts.log", "umounts.log"):  # logs of versions that kept them here
            _unlink(os.path.join(self.dir, name))
        for name in ("users", "steps"):
            try:
                os.rmdir(os.path.join(self.dir, name))
            except FileNotFoundError:
                pass
            except OSError:
                return False  # something we do not know of is in there: leave it all
        _unlink(os.path.join(self.dir, "lock"))  # last: from here on, newcomers make a new directory
        try:
            os.rmdir(self.dir)
        except OSError:
            return False
        return True

    def _log(self, name: str, fields: str) -> None:
        """One line in the user's log directory (never the node's /tmp); a log that cannot be written
        never fails an exec."""
        step = f"{os.environ.get('SLURM_JOB_ID')}.{os.environ.get('SLURM_STEP_ID')}" \
            if os.environ.get("SLURM_STEP_ID") else "-"
        line = f"{time.time():.3f} host={hostname()} pid={os.getpid()} step={step} uuid={self.uuid} {fields}\n"
        try:
            directory = log_dir()
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line.encode("utf-8", "surrogateescape"))
            finally:
                os.close(fd)
        except OSError:
            pass

    def log_mount(self, backend: str, seconds: float) -> None:
        """One line per mount made on this node (mounts.log): lets tests and admins count mounts per
        job step and node."""
        self._log("mounts.log", f"backend={backend} seconds={seconds:.3f}")

    def log_unmount(self, by: str) -> None:
        """One line per unmount (umounts.log), saying who: last-task, watcher, umount or stale-cleaned."""
        self._log("umounts.log", f"by={by}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

