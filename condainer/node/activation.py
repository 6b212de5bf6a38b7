"""The environment a command runs in: conda-style (PATH, CONDA_PREFIX, env_vars, activate.d) or venv.

On `cnd exec`'s per-rank path: os only at load time; json and subprocess only when the environment
has variables or activate.d scripts.
"""

import os

from condainer.errors import CondainerError


def kind(prefix: os.PathLike | str) -> str:
    """'conda' (has conda-meta/), 'venv' (has pyvenv.cfg) or 'plain'."""
    prefix = os.fspath(prefix)
    if os.path.isdir(os.path.join(prefix, "conda-meta")):
        return "conda"
    if os.path.isfile(os.path.join(prefix, "pyvenv.cfg")):
        return "venv"
    return "plain"


def env_vars(prefix: str) -> dict[str, str]:
    """`variables:` of environment.yml, as conda keeps them in conda-meta/state."""
    try:
        with open(os.path.join(prefix, "conda-meta", "state"), "rb") as fh:
            text = fh.read()
    except OSError:
        return {}
    import json

    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in ((data.get("env_vars") if isinstance(data, dict) else None) or {}).items()}


def activate_scripts(prefix: os.PathLike | str) -> list[str]:
    d = os.path.join(os.fspath(prefix), "etc", "conda", "activate.d")
    try:
        names = os.listdir(d)
    except OSError:
        return []
    return sorted(os.path.join(d, n) for n in names if n.endswith(".sh") and not n.startswith("."))


def activated_environ(prefix: os.PathLike | str, base: dict[str, str] | None = None) -> dict[str, str]:
    """BASE (default: os.environ) with PREFIX activated, as `source activate` would leave it."""
    prefix = os.fspath(prefix)
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONHOME", None)
    env["PATH"] = f"{os.path.join(prefix, 'bin')}{os.pathsep}{env.get('PATH', '')}".rstrip(os.pathsep)
    what = kind(prefix)
    if what == "venv":
        env["VIRTUAL_ENV"] = prefix
        return env
    if what != "conda":
        return env
    env["CONDA_PREFIX"] = prefix
    env["CONDA_DEFAULT_ENV"] = prefix
    env["CONDA_SHLVL"] = "1"
    env.update(env_vars(prefix))
    scripts = activate_scripts(prefix)
    if not scripts:
        return env
    import subprocess

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
