"""`cnd kernel install|remove`: a Jupyter kernelspec that starts the image's ipykernel.

A Jupyter server running outside the image starts the kernel through the project's python launcher
(launchers.py), so the kernel's process mounts the image, counts as one user of it like a `cnd exec`,
and the last user unmounts. Interrupts go as a message (interrupt_mode "message"): a SIGINT sent to
the kernel's process group would reach ipykernel twice, once from Jupyter and once forwarded by the
launcher.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil

from condainer.errors import CondainerError
from condainer.fs.atomic import write_atomically

NAME_RE = re.compile(r"[A-Za-z0-9._-]+")


def default_name(project_dir: str) -> str:
    """condainer-<project directory name>, in the letters Jupyter allows in a kernel name."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", os.path.basename(os.path.abspath(project_dir))).strip("-.")
    return f"condainer-{base or 'project'}".lower()


def kernels_dir(prefix: str | None = None) -> str:
    """Where Jupyter looks for kernelspecs: PREFIX/share/jupyter/kernels, or the user's data
    directory ($JUPYTER_DATA_DIR, else ~/.local/share/jupyter) + /kernels, as Jupyter has it."""
    if prefix:
        return os.path.join(os.path.abspath(prefix), "share", "jupyter", "kernels")
    data = os.environ.get("JUPYTER_DATA_DIR") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share"), "jupyter")
    return os.path.join(data, "kernels")


def _check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise CondainerError(f"kernel name {name!r}: use letters, digits, '.', '_' and '-' only", exit_code=2)
    return name


def has_ipykernel(env_prefix: str) -> bool:
    """True when the environment (mounted at ENV_PREFIX) can import ipykernel."""
    pattern = os.path.join(glob.escape(env_prefix), "lib", "python*", "site-packages", "ipykernel_launcher.py")
    return bool(glob.glob(pattern))


def spec(project_dir: str, display_name: str) -> dict:
    """The kernel.json of PROJECT_DIR's environment."""
    return {
        "argv": [os.path.join(project_dir, "bin", "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": "message",
        "metadata": {"condainer": {"project": project_dir}, "debugger": True},
    }


def install(directory: os.PathLike | str, *, name: str | None = None, display_name: str | None = None,
            prefix: str | None = None, backend: str | None = None) -> str:
    """Write the kernelspec; returns its directory. Refused when the environment has no ipykernel
    or the project has no python launcher."""
    from condainer.node import launchers, runner
    from condainer.project.directory import Project

    project = Project.load(directory, remember_for_exec=True)
    project_dir = str(project.directory)
    name = _check_name(name or default_name(project_dir))
    python = os.path.join(project_dir, "bin", "python")
    if not launchers.is_launcher(python):
        raise CondainerError(f"{python} is missing: add python to `launchers:` of condainer.yml (or leave the "
                             "key out) and run `cnd launchers`")
    with runner.mounted(project_dir, backend=backend) as layout:
        found = has_ipykernel(layout.env_prefix)
    if not found:
        raise CondainerError("the environment has no ipykernel: add `ipykernel` to requirements.txt (or to "
                             "environment.yml) and run `cnd build --force`")
    target = os.path.join(kernels_dir(prefix=prefix), name)
    data = json.dumps(spec(project_dir, display_name or f"Python ({os.path.basename(project_dir)}, condainer)"),
                      indent=1) + "\n"
    try:
        os.makedirs(target, exist_ok=True)
        write_atomically(os.path.join(target, "kernel.json"), data.encode())
    except OSError as exc:
        raise CondainerError(f"cannot write the kernelspec into {target}: {exc.strerror}") from exc
    return target


def remove(directory: os.PathLike | str, *, name: str | None = None, prefix: str | None = None) -> str:
    """Remove the kernelspec NAME (only one that names a condainer project); returns its directory."""
    name = _check_name(name or default_name(os.path.abspath(directory)))
    target = os.path.join(kernels_dir(prefix=prefix), name)
    try:
        with open(os.path.join(target, "kernel.json")) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise CondainerError(f"no kernel {name} in {os.path.dirname(target)}") from None
    except (OSError, ValueError) as exc:
        raise CondainerError(f"cannot read {target}/kernel.json: {exc}") from exc
    if "condainer" not in (data.get("metadata") or {}):
        raise CondainerError(f"{target} is not a kernel written by `cnd kernel install`; left as it is")
    shutil.rmtree(target)
    return target
