"""The per-node reference count of `cnd exec` sessions sharing one mount.

All ranks of a job step on one node run `cnd exec` at once: the first mounts, the others reuse the
mount, the last one unmounts. The count lives in a private state directory on the node (next to the
mount point) as one file per running exec, named by pid and holding the process start time, so an
exec killed with SIGKILL is recognised as gone (pid dead, or reused by another process) and dropped.
Every change happens under an exclusive flock of one lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from condainer.errors import BuildError
from condainer.safedir import ensure_private_dir
from condainer.sysinfo import hostname


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of PID (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


@contextlib.contextmanager
def build_lock(state_dir: os.PathLike | str) -> Iterator[None]:
    """Hold the node-local build lock of a project (``build.lock`` in its state directory) or fail at
    once naming the pid that holds it. The kernel drops the lock when its holder dies, so a killed
    build never blocks the next one."""
    directory = ensure_private_dir(state_dir, what="state directory")
    fd = os.open(directory / "build.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise BuildError(f"another `cnd build` of this project is running on this node (pid {pid})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


class NodeSessions:
    """The execs using one mount on this node; use methods only inside ``with sessions.locked():``."""

    def __init__(self, state_dir: os.PathLike | str) -> None:
        self.dir = Path(state_dir)
        self.users = self.dir / "users"
        self.pin_file = self.dir / "pinned"
        self.log_file = self.dir / "mounts.log"

    @contextlib.contextmanager
    def locked(self) -> Iterator[NodeSessions]:
        ensure_private_dir(self.dir, what="state directory")
        ensure_private_dir(self.users, what="state directory")
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self
        finally:
            os.close(fd)  # closing releases the lock, also when we are killed

    def add(self, pid: int) -> None:
        start = process_start_time(pid) or ""
        (self.users / str(pid)).write_text(start)

    def remove(self, pid: int) -> None:
        (self.users / str(pid)).unlink(missing_ok=True)

    def active(self) -> list[int]:
        """Pids of execs still running; entries of dead or reused pids are removed."""
        alive = []
        for entry in self.users.iterdir():
            try:
                pid = int(entry.name)
                recorded = entry.read_text()
            except (ValueError, OSError):
                entry.unlink(missing_ok=True)
                continue
            if process_start_time(pid) == recorded and recorded:
                alive.append(pid)
            else:
                entry.unlink(missing_ok=True)
        return sorted(alive)

    @property
    def pinned(self) -> bool:
        """True after an explicit `cnd mount`: execs then leave the mount in place."""
        return self.pin_file.exists()

    def pin(self, on: bool) -> None:
        if on:
            self.pin_file.write_text("")
        else:
            self.pin_file.unlink(missing_ok=True)

    def step_done(self, step: str, local_id: str, expected: int) -> bool:
        """Record that task LOCAL_ID of Slurm step STEP finished here; True once all EXPECTED have."""
        d = self.dir / "steps" / step
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        (d / local_id).write_text("")
        if sum(1 for _ in d.iterdir()) >= expected:
            self.forget_step(step)
            return True
        return False

    def open_steps(self) -> list[str]:
        """Job steps with tasks that finished an exec here and that are not known to be over."""
        d = self.dir / "steps"
        if not d.is_dir():
            return []
        return sorted(e.name for e in d.iterdir() if e.is_dir())

    def forget_step(self, step: str) -> None:
        """Drop what we recorded about STEP (it is over on this node)."""
        d = self.dir / "steps" / step
        if d.is_dir():
            for entry in d.iterdir():
                entry.unlink(missing_ok=True)
            d.rmdir()
        (self.dir / "steps" / f"{step}.reaper").unlink(missing_ok=True)

    def _log(self, log: Path, fields: str) -> None:
        step = f"{os.environ.get('SLURM_JOB_ID')}.{os.environ.get('SLURM_STEP_ID')}" \
            if os.environ.get("SLURM_STEP_ID") else "-"
        with open(log, "a") as fh:
            fh.write(f"{time.time():.3f} host={hostname()} pid={os.getpid()} step={step} {fields}\n")

    def log_mount(self, backend: str, seconds: float) -> None:
        """One line per mount made on this node: lets tests and admins count mounts per job step."""
        self._log(self.log_file, f"backend={backend} seconds={seconds:.3f}")

    def log_unmount(self, by: str) -> None:
        """One line per unmount (umounts.log), saying who: last-task, watcher, umount or stale-cleaned."""
        self._log(self.dir / "umounts.log", f"by={by}")

    def mount_count(self) -> int:
        try:
            return len(self.log_file.read_text().splitlines())
        except FileNotFoundError:
            return 0
