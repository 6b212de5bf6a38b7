"""Running ``cnd`` as a user does: ``python -m condainer`` in a child process.

tests/conftest.py puts this checkout first on PYTHONPATH, so the child runs the code under test.
"""

from __future__ import annotations

import subprocess
import sys


def cnd(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """The finished ``cnd ARGS`` (text output captured); never raises for a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "condainer", *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )
