"""pip: requirements.txt into the environment, or into a venv of the host Python when there is no
environment.yml (the image then needs the same Python at the same path on the machine that runs it)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from condainer import console
from condainer.environments import installed
from condainer.environments.run import clean_environ, run_step


def host_python() -> str:
    """The interpreter behind the one running cnd (a venv's base, so the new venv does not chain)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def host_python_record() -> dict[str, str]:
    """What a venv image depends on, for the lock: the host interpreter's path and version."""
    return {"executable": host_python(), "version": platform.python_version()}


def create_venv(prefix: Path) -> None:
    console.info(f"creating a venv of {host_python()} at {prefix}")
    run_step([host_python(), "-m", "venv", str(prefix)], what="python -m venv")


def pip_install(prefix: Path, requirements: Path, *, activate_env: dict[str, str] | None = None,
                locked: bool = False) -> None:
    """Install REQUIREMENTS with the environment's own pip (its interpreter, its site-packages);
    pip's --report of what it installed goes into PREFIX for the lock. LOCKED: REQUIREMENTS is
    the lock's hashed list, installed as it is (--require-hashes, no dependency resolution)."""
    console.info(f"installing {'the pip packages of condainer.lock' if locked else requirements.name} with pip")
    python = prefix / "bin" / "python"
    cmd = [str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
           "--report", str(installed.report_path(prefix)), "-r", str(requirements)]
    if locked:
        cmd += ["--require-hashes", "--no-deps"]
    if console.is_quiet():
        cmd.insert(4, "-q")
    env = clean_environ(activate_env)
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # Relative entries such as `-e ./src` are meant relative to the requirements file.
    run_step(cmd, what=f"pip install -r {requirements.name}", env=env, cwd=str(requirements.parent))
