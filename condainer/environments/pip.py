"""pip: requirements.txt into the environment, or into a venv of the host Python when there is no
environment.yml (the image then needs the same Python at the same path on the machine that runs it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from condainer import console
from condainer.environments.run import clean_environ, run_step


def host_python() -> str:
    """The interpreter behind the one running cnd (a venv's base, so the new venv does not chain)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def create_venv(prefix: Path) -> None:
    console.info(f"creating a venv of {host_python()} at {prefix}")
    run_step([host_python(), "-m", "venv", str(prefix)], what="python -m venv")


def pip_install(prefix: Path, requirements: Path, *, activate_env: dict[str, str] | None = None) -> None:
    """Install REQUIREMENTS with the environment's own pip (its interpreter, its site-packages)."""
    console.info(f"installing {requirements.name} with pip")
    python = prefix / "bin" / "python"
    cmd = [str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "-r", str(requirements)]
    if console.is_quiet():
        cmd.insert(4, "-q")
    env = clean_environ(activate_env)
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # Relative entries such as `-e ./src` are meant relative to the requirements file.
    run_step(cmd, what=f"pip install -r {requirements.name}", env=env, cwd=str(requirements.parent))
