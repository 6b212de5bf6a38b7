"""One exception hierarchy, and how a run ends with it: every expected failure is a CondainerError
with a one-line message, which `cnd` (and a launcher's slow path) prints as ``cnd: error: <message>``
before it exits with ``exit_code``; Ctrl-C, SIGTERM and SIGHUP end it as "interrupted" and 130.
Anything else that escapes is a bug and keeps its traceback.

Standard library only, and only the C half of signal: this is on every rank's path.
"""

import sys

try:
    import _signal as signal  # the C half: signal.py's enums cost more than `cnd exec` itself
except ImportError:  # pragma: no cover - an interpreter without it
    import signal  # type: ignore[no-redef]

# SIGTERM (Slurm, kill, timeout) and SIGHUP (a closed terminal or ssh session) unwind like Ctrl-C, so
# `finally` blocks release the mount, stop children and remove temporary files (a half-written image).
INTERRUPTING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class CondainerError(Exception):
    """An expected failure, reported to the user as one line and a non-zero exit."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        # Keep it to one line whatever the cause embedded in it.
        return " ".join(str(self).split())


def child_reason(stderr: str | None, returncode: int, *, prefer: tuple[str, ...] = ()) -> str:
    """The line of a failed child's stderr that says why: the last line that PREFER[0] (a regular
    expression matched at the line's start, case-insensitive) matches, else PREFER[1], and so on,
    else the last non-empty line, else the exit code.  Order matters: libmamba ends with "critical
    libmamba Aborting." after the "error" line that names the problem."""
    import re  # here, not at the top: errors are imported on `cnd exec`'s per-rank path

    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    for pattern in prefer:
        matching = [line for line in lines if re.match(pattern, line, re.IGNORECASE)]
        if matching:
            return matching[-1]
    return lines[-1] if lines else f"exit code {returncode}"


class ConfigError(CondainerError):
    """condainer.yml, environment.yml or requirements.txt is missing or invalid."""

class ImageError(CondainerError):
    """A squashfs image is missing, damaged or cannot be written."""


class MountError(CondainerError):
    """Mounting or unmounting failed (busy, stale, no FUSE, not a directory, ...)."""


class BuildError(CondainerError):
    """Building the environment failed (solver, installer, pip)."""


class ToolMissing(CondainerError):
    """A native tool or system facility that was asked for is not available."""


def raise_interrupt(_signum, _frame):
    """The handler of INTERRUPTING_SIGNALS."""
    raise KeyboardInterrupt


def handle_interrupting_signals() -> None:
    """INTERRUPTING_SIGNALS raise KeyboardInterrupt from now on, for the whole run; one that is
    ignored (`nohup cnd build`) stays ignored."""
    for signum in INTERRUPTING_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, raise_interrupt)


def error_line(message: str) -> str:
    """The one line an expected failure prints."""
    return f"cnd: error: {message}"


def run_reporting_errors(run) -> None:
    """Call RUN() (returning an exit code) and exit with it; expected failures become one line and
    their exit code, Ctrl-C, SIGTERM and SIGHUP "interrupted" and 130."""
    handle_interrupting_signals()
    try:
        code = run()
    except CondainerError as exc:
        print(error_line(exc.message), file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("cnd: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)  # `cnd status | head` closing the pipe early is not an error worth a traceback
    sys.exit(code)
