"""Run an installer step as a child process: output shown unless -q, one-line error on failure.

Every installer child runs in its own process group: pip, venv's ensurepip and conda installers
start grandchildren that write into the staging directory. When cnd is interrupted (Ctrl-C,
SIGTERM, SIGHUP) the whole group is terminated, killed after a short grace, and waited for, so
that nothing writes into the staging directory any more while `cnd build` removes it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from condainer import console
from condainer.errors import BuildError, child_reason

# The line that names the problem: pip's "ERROR: ...", libmamba's "error    libmamba ...",
# conda's "PackagesNotFoundError: ...", "CondaValueError: ..."; libmamba's "critical" last.
PREFERRED_REASONS = (r"error\b", r"\w+Error: ", r"critical\b")

# Seconds an interrupted installer group gets to exit after SIGTERM before it is killed.
STOP_GRACE = 2.0

INTERRUPTS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def clean_environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment minus what would leak the host Python into the build."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")}
    env.update(extra or {})
    return env


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM/SIGHUP until the block is done, so a second signal cannot cut a cleanup
    short; a signal that arrived meanwhile is delivered (as KeyboardInterrupt) when it ends."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _group_alive(pgid: int) -> bool:
    """True while a process of group PGID is running (zombies, which cannot write, do not count)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid:
            return True
    return False


def _wait_group(proc: subprocess.Popen, seconds: float) -> bool:
    """Wait up to SECONDS for PROC's process group to be gone; True if it is."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        proc.poll()  # reap our child, so it does not count as alive
        if not _group_alive(proc.pid):
            return True
        time.sleep(0.02)
    return False


def stop_group(proc: subprocess.Popen) -> None:
    """Terminate PROC's process group, kill it after STOP_GRACE seconds, and wait until it is gone."""
    for sig, patience in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        if _wait_group(proc, patience):
            break
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=1)


def run_group(cmd: Sequence[str], *, input: str | None = None, **popen: Any) -> subprocess.CompletedProcess:
    """subprocess.run in a new process group that is stopped as a whole when we are interrupted.
    The group is a new session's (Popen's process_group= needs Python 3.11; setsid makes a group
    too, in C, where preexec_fn=os.setpgrp would run Python between fork and exec)."""
    proc = subprocess.Popen(list(cmd), start_new_session=True, text=True,
                            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL, **popen)
    try:
        out, err = proc.communicate(input)
    except BaseException:
        with interrupts_deferred():
            stop_group(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_step(cmd: Sequence[str], *, what: str, env: dict[str, str] | None = None, cwd: str | None = None) -> None:
    """Run CMD; its stdout is shown (unless quiet), stderr is kept to name the failure in one line."""
    try:
        proc = run_group(
            cmd,
            stdout=subprocess.DEVNULL if console.is_quiet() else None,
            stderr=subprocess.PIPE,
            env=env if env is not None else clean_environ(),
            cwd=cwd,
        )
    except FileNotFoundError:
        raise BuildError(f"{what} failed: {cmd[0]} not found") from None
    if proc.returncode != 0:
        reason = child_reason(proc.stderr, proc.returncode, prefer=PREFERRED_REASONS)
        raise BuildError(f"{what} failed: {reason}")
    if not console.is_quiet() and proc.stderr.strip():
        # warnings of a successful step are still worth seeing
        print(proc.stderr.rstrip(), file=sys.stderr)


def leave(code: int) -> None:
    """End a py-rattler child: flush what it printed, then os._exit, so py-rattler's runtime threads
    never meet the interpreter's shutdown (rattler_child.py and the detection child in virtual.py)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
