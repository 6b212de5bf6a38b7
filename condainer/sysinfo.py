"""Facts about the machine this process runs on (the CPUs it may use), and how the processes
condainer starts live and die with it.

The CPU count and the signals that interrupt a pack are condainer.fs's (fs/host.py,
fs/interrupts.py), which the squashfs layer holds itself: this module hands them on.
"""

from __future__ import annotations

import ctypes
import os
import signal

from condainer.fs.host import usable_cpus as usable_cpus
from condainer.fs.interrupts import signals_interrupt as signals_interrupt

# --- child processes -------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - no C library to ask (not Linux)
    _libc = None


def die_with_parent(parent: int | None = None, signum: int = signal.SIGKILL) -> None:
    """In a freshly forked child: have the kernel send it SIGNUM (SIGKILL unless said) when its
    parent dies; with PARENT, exit at once if that parent is already gone.

    A parent killed by SIGKILL, the OOM killer or the end of a Slurm step runs no cleanup, so this is
    the only way mksquashfs, a FUSE daemon in a namespace or any child does not run on forever. The
    signal survives exec. The getppid() check closes the window between fork and prctl. Usable as a
    preexec_fn: it only calls prctl and getppid, and takes no lock.
    """
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(1)
