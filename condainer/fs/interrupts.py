"""SIGTERM and SIGHUP raise KeyboardInterrupt while a pack runs, so they get Ctrl-C's cleanup.

SIGTERM is what kill, Slurm and systemd send; SIGHUP what an ssh disconnect or a closed terminal
sends. Their default action kills the packer with no cleanup, leaving the temporary image (and
mksquashfs, for condainer's native backend) behind. condainer.sysinfo hands this module's
definitions on to the rest of condainer.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from condainer.errors import INTERRUPTING_SIGNALS, raise_interrupt


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """INTERRUPTING_SIGNALS raise KeyboardInterrupt in the main thread for the duration, so they get
    the cleanup Ctrl-C gets (temporary files removed, children stopped) instead of killing the
    process on the spot, and are reported as Ctrl-C is (exit status 130). A signal that is ignored
    (nohup) stays ignored; the previous handlers are restored after.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in INTERRUPTING_SIGNALS:
        current = signal.getsignal(signum)
        if current is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, raise_interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
