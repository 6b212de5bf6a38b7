"""The environment a command runs in: conda-style (PATH, CONDA_PREFIX, env_vars, activate.d) or venv."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from condainer.errors import CondainerError


def kind(prefix: Path) -> str:
    """'conda' (has conda-meta/), 'venv' (has pyvenv.cfg) or 'plain'."""
    if (prefix / "conda-meta").is_dir():
        return "conda"
    if (prefix / "pyvenv.cfg").is_file():
        return "venv"
    return "plain"


def _env_vars(prefix: Path) -> dict[str, str]:
    """`variables:` of environment.yml, as conda keeps them in conda-meta/state."""
    try:
        data = json.loads((prefix / "conda-meta" / "state").read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in (data.get("env_vars") or {}).items()}


def activate_scripts(prefix: Path) -> list[Path]:
    d = prefix / "etc" / "conda" / "activate.d"
    return sorted(d.glob("*.sh")) if d.is_dir() else []


def activated_environ(prefix: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """BASE (default: os.environ) with PREFIX activated, as `source activate` would leave it."""
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONHOME", None)
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}".rstrip(os.pathsep)
    what = kind(prefix)
    if what == "venv":
        env["VIRTUAL_ENV"] = str(prefix)
        return env
    if what != "conda":
        return env
    env["CONDA_PREFIX"] = str(prefix)
    env["CONDA_DEFAULT_ENV"] = str(prefix)
    env["CONDA_SHLVL"] = "1"
    env.update(_env_vars(prefix))
    scripts = activate_scripts(prefix)
    if not scripts:
        return env
    # activate.d scripts are shell code: let bash run them and read back what they exported.
    body = "".join(f'. "{s}" || exit 97\n' for s in scripts) + "env -0\n"
    try:
        out = subprocess.run(["bash", "-c", body], env=env, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise CondainerError(f"an activate.d script of {prefix} failed: {exc}") from exc
    result = {}
    for item in out.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            result[key.decode(errors="surrogateescape")] = value.decode(errors="surrogateescape")
    for noise in ("SHLVL", "_", "PWD", "OLDPWD"):
        if noise in env:
            result[noise] = env[noise]
        else:
            result.pop(noise, None)
    return result
