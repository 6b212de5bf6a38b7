"""Facts about the machine this process runs on (CPUs it may use, host name), and how the
processes condainer starts live and die with it.

The CPU count and the signals that interrupt a pack are condainer.fs's (fs/host.py,
fs/interrupts.py), which the squashfs layer holds itself: this module hands them on.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket

from condainer.fs.host import usable_cpus as usable_cpus
from condainer.fs.interrupts import signals_interrupt as signals_interrupt

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


def hostname() -> str:
    return socket.gethostname().split(".")[0]
