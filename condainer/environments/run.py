"""Run an installer step as a child process: output shown unless -q, one-line error on failure."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from condainer import console
from condainer.errors import BuildError, child_reason

# The line that names the problem: pip's "ERROR: ...", libmamba's "error    libmamba ...",
# conda's "PackagesNotFoundError: ...", "CondaValueError: ..."; libmamba's "critical" last.
PREFERRED_REASONS = (r"error\b", r"\w+Error: ", r"critical\b")


def clean_environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment minus what would leak the host Python into the build."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")}
    env.update(extra or {})
    return env


def run_step(cmd: Sequence[str], *, what: str, env: dict[str, str] | None = None, cwd: str | None = None) -> None:
    """Run CMD; its stdout is shown (unless quiet), stderr is kept to name the failure in one line."""
    try:
        proc = subprocess.run(
            list(cmd),
            stdout=subprocess.DEVNULL if console.is_quiet() else None,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
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
