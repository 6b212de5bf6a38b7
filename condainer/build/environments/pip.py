"""pip: requirements.txt into the environment, or into a venv of the host Python when there is no
environment.yml (the image then needs the same Python at the same path on the machine that runs it)."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from condainer import console
from condainer.build.environments import installed
from condainer.build.environments.run import clean_environ, run_step
from condainer.build.lockfile import file_sha256
from condainer.errors import BuildError

# `pip install --report`, which tells the lock what pip installed, came with pip 22.2. A venv of a
# Python whose ensurepip bundles an older pip (Ubuntu 22.04's 22.0.2) first gets this pip, pinned by
# its hash so that every build, --locked or not, installs the same bytes; it is locked like the rest.
REPORT_SINCE = (22, 2)
PIP_UPGRADE = {
    "name": "pip", "version": "24.2",
    "sha256": "2cd581cf58ab7fcfca4ce8efa6dcacd0de5bf8d0a3eb9ec927e07405f4d9e2a2",
    "url": "https://files.pythonhosted.org/packages/d4/55/90db48d85f7689ec6f81c0db0622d704306c5284850383c090e6c7195a5c/"
           "pip-24.2-py3-none-any.whl",
}


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
                locked: bool = False, hashes: bool = True) -> None:
    """Install REQUIREMENTS with the environment's own pip (its interpreter, its site-packages);
    pip's --report of what it installed goes into PREFIX for the lock. LOCKED: REQUIREMENTS is a
    list made from the lock, installed as it is (no dependency resolution), hash-checked unless
    not HASHES (checkouts and directories, which have no archive to hash)."""
    python = prefix / "bin" / "python"
    env = environ(prefix, activate_env)
    _ensure_report(prefix, env)
    console.info(f"installing {'the pip packages of condainer.lock' if locked else requirements.name} with pip")
    cmd = [str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
           "--report", str(installed.report_path(prefix)), "-r", str(requirements)]
    if locked:
        cmd += ["--require-hashes", "--no-deps"] if hashes else ["--no-deps"]
    if console.is_quiet():
        cmd.insert(4, "-q")
    # Relative entries such as `-e ./src` are meant relative to the requirements file.
    run_step(cmd, what=f"pip install -r {requirements.name}", env=env, cwd=str(requirements.parent))


def environ(prefix: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """What pip of PREFIX runs with: our clean environment (plus EXTRA), PREFIX's bin first on PATH."""
    env = clean_environ(extra)
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def wheel_sha256(prefix: Path, directory: Path) -> str:
    """The sha256 of the wheel PREFIX's pip builds from DIRECTORY now (SOURCE_DATE_EPOCH, exported
    by the build, fixes the times in it): what the lock checks a directory against."""
    with tempfile.TemporaryDirectory(prefix="condainer-wheel-") as tmp:
        run_step([str(prefix / "bin" / "python"), "-m", "pip", "wheel", "-q", "--no-input",
                  "--disable-pip-version-check", "--no-deps", "-w", tmp, str(directory)],
                 what=f"pip wheel {directory}", env=environ(prefix))
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise BuildError(f"pip wheel {directory} made {len(wheels)} wheels, not one")
        return file_sha256(wheels[0])


def pip_version(prefix: Path, env: dict[str, str]) -> str:
    """The version of PREFIX's pip (``pip 22.0.2 from ...``); a BuildError when it has none."""
    try:
        out = subprocess.run([str(prefix / "bin" / "python"), "-m", "pip", "--version"], capture_output=True,
                             text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"cannot run the environment's pip: {exc}") from None
    match = re.match(r"pip (\d+\.\d+\S*)", out.stdout)
    if out.returncode != 0 or not match:
        raise BuildError(f"the environment at {prefix} has no usable pip: add pip to it")
    return match.group(1)


def _ensure_report(prefix: Path, env: dict[str, str]) -> None:
    """Bring PREFIX's pip up to PIP_UPGRADE when it is too old for --report, and record that install
    as a report of our own (the old pip cannot write one), so that the lock holds it too."""
    have = pip_version(prefix, env)
    if tuple(int(n) for n in re.findall(r"\d+", have)[:2]) >= REPORT_SINCE:
        return
    want = f"{PIP_UPGRADE['name']}=={PIP_UPGRADE['version']}"
    console.info(f"pip {have} of the environment has no --report: installing {want}")
    with tempfile.TemporaryDirectory(prefix="condainer-pip-") as tmp:
        req = Path(tmp) / "pip-upgrade.txt"
        req.write_text(f"{want} --hash=sha256:{PIP_UPGRADE['sha256']}\n")
        cmd = [str(prefix / "bin" / "python"), "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
               "--require-hashes", "--no-deps", "-r", str(req)]
        run_step(cmd[:4] + (["-q"] if console.is_quiet() else []) + cmd[4:], what=f"pip install {want}", env=env)
    report = {"version": "1", "install": [{
        "metadata": {"name": PIP_UPGRADE["name"], "version": PIP_UPGRADE["version"]},
        "download_info": {"url": PIP_UPGRADE["url"], "archive_info": {"hashes": {"sha256": PIP_UPGRADE["sha256"]}}},
    }]}
    installed.report_path(prefix).write_text(json.dumps(report))
