"""The CPythons condainer supports, found on this machine: one list, read by the multi-Python tests
and quoted by README's install section."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

SUPPORTED = ("3.10", "3.11", "3.12", "3.13")  # pyproject's requires-python, and each one tested


def find(version: str) -> str | None:
    """An interpreter of CPython VERSION (``3.12``): the one running the tests, a pyenv version, or
    ``pythonX.Y`` on PATH; None when the machine has none."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return getattr(sys, "_base_executable", None) or sys.executable
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", "python")), reverse=True)
    candidates += [p for p in (shutil.which(f"python{version}"),) if p]
    for path in candidates:
        if _version_of(path) == version:
            return path
    return None


def _version_of(python: str) -> str | None:
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
