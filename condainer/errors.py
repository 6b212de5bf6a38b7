"""One exception hierarchy: every expected failure is a CondainerError with a one-line message.

The CLI prints ``cnd: error: <message>`` and exits with ``exit_code``; anything else that escapes is a
bug and keeps its traceback.
"""

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
