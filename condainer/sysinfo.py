"""Facts about the machine this process runs on (CPUs it may use, host name), and how the
processes condainer starts live and die with it."""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import socket
import threading
from collections.abc import Iterator


def usable_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup CPU quota when one is set."""
    cpus = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, quota)) if quota else max(1, cpus)


def _cgroup_cpu_quota() -> int | None:
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: cpu.max = "<quota|max> <period>" on the path and above
            candidates = [("/sys/fs/cgroup" + path, "cpu.max")]
        elif "cpu" in controllers.split(","):
            candidates = [(f"/sys/fs/cgroup/{controllers}" + path, "cpu.cfs_quota_us")]
        else:
            continue
        for base, name in candidates:
            d = base.rstrip("/")
            while d.startswith("/sys/fs/cgroup"):
                limit = _read_quota(d, name)
                if limit:
                    limits.append(limit)
                d = os.path.dirname(d)
    return min(limits) if limits else None


def _read_quota(directory: str, name: str) -> int | None:
    try:
        with open(os.path.join(directory, name)) as f:
            text = f.read().split()
        if name == "cpu.max":
            if text[0] == "max":
                return None
            return math.ceil(int(text[0]) / int(text[1]))
        quota = int(text[0])
        if quota <= 0:
            return None
        with open(os.path.join(directory, "cpu.cfs_period_us")) as f:
            return math.ceil(quota / int(f.read()))
    except (OSError, ValueError, IndexError, ZeroDivisionError):
        return None


# --- child processes -------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - no C library to ask (not Linux)
    _libc = None


def die_with_parent(parent: int) -> None:
    """In a freshly forked child: have the kernel SIGKILL it when its parent dies; exit at once if
    the parent PARENT is already gone.

    A parent killed by SIGKILL, the OOM killer or the end of a Slurm step runs no cleanup, so this is
    the only way mksquashfs (or any child) does not run on forever. The signal survives
    exec. The getppid() check closes the window between fork and prctl. Usable as a preexec_fn: it
    only calls prctl and getppid, and takes no lock.
    """
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


# SIGTERM is what kill, Slurm and systemd send; SIGHUP what an ssh disconnect or a closed terminal
# sends (its default action kills the packer with no cleanup, leaving the temporary image behind).
INTERRUPTING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """INTERRUPTING_SIGNALS raise KeyboardInterrupt in the main thread for the duration, so they get
    the cleanup Ctrl-C gets (temporary files removed, children stopped) instead of killing the
    process on the spot, and are reported as Ctrl-C is, as cnd does for SIGTERM (cli/exits.py). A signal that is
    ignored (nohup) stays ignored; the previous handlers are restored after.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in INTERRUPTING_SIGNALS:
        current = signal.getsignal(signum)
        if current is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, _raise_interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)



def hostname() -> str:
    return socket.gethostname().split(".")[0]
