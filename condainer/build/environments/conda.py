"""A conda executable (mamba, conda, micromamba) or a Miniforge installer, when the user has one."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from condainer import console
from condainer.build.environments import virtual
from condainer.build.environments.run import clean_environ, run_step
from condainer.errors import BuildError


def find_installer(project_dir: Path, installer_url: str) -> Path | None:
    """$CONDAINER_INSTALLER, else installer_url when it names a local file (or an upstream
    download already in the project directory); None means: no installer."""
    candidate = os.environ.get("CONDAINER_INSTALLER") or installer_url
    if not candidate:
        return None
    if candidate.startswith(("http://", "https://")):
        local = project_dir / os.path.basename(candidate)
        return local if local.is_file() else None
    path = Path(candidate)
    if not path.is_absolute():
        path = project_dir / path
    if not path.is_file():
        raise BuildError(f"installer {path} not found")
    return path


def find_conda_exe(name: str) -> str | None:
    """The conda_exe of condainer.yml when it is on PATH."""
    return shutil.which(name) if name else None


# Answer yes to any prompt (stdin is /dev/null, so a prompt would otherwise abort the step).
ALWAYS_YES = {"CONDA_ALWAYS_YES": "true", "MAMBA_ALWAYS_YES": "true"}


def seed_prefix(prefix: Path) -> None:
    """Make our private (0700) staging directory an empty conda environment.

    micromamba and mamba >= 2 refuse to ``create`` into an existing directory that is not a conda
    environment ("Non-conda folder exists at prefix"), and with --yes they would delete and
    recreate it, giving up the mode and ownership we checked in /tmp.  An empty
    conda-meta/history makes it an environment that every frontend installs into in place."""
    meta = prefix / "conda-meta"
    meta.mkdir(mode=0o755, exist_ok=True)
    (meta / "history").touch()


def frontend_environ(virtual_packages: Mapping[str, str] | None) -> dict[str, str]:
    """The environment of a conda frontend: ours, with yes to every prompt and condainer.yml's
    virtual_packages as the CONDA_OVERRIDE_* variables every frontend reads."""
    return clean_environ({**ALWAYS_YES, **virtual.frontend_environ(virtual_packages)})


def install_explicit(exe: str, explicit: Path, prefix: Path, virtual_packages: Mapping[str, str] | None = None) -> None:
    """Install the @EXPLICIT list EXPLICIT into the environment at PREFIX: conda, mamba and
    micromamba all take it with `install --file` and install exactly it, with no solve."""
    name = os.path.basename(exe)
    seed_prefix(prefix)
    console.info(f"installing the conda packages of condainer.lock with {name} (no solve)")
    run_step([exe, "install", "--yes", "--prefix", str(prefix), "--file", str(explicit)],
             what=f"{name} install --file", env=frontend_environ(virtual_packages))


def create_with_exe(exe: str, env_yml: Path, prefix: Path, virtual_packages: Mapping[str, str] | None = None,
                    explicit: Path | None = None) -> None:
    """Install ENV_YML's packages into the (empty) environment at PREFIX with mamba, conda or
    micromamba, in place, solving for the VIRTUAL_PACKAGES of condainer.yml (with EXPLICIT, the
    lock's @EXPLICIT list instead, unsolved)."""
    if explicit is not None:
        install_explicit(exe, explicit, prefix, virtual_packages)
        return
    name = os.path.basename(exe)
    seed_prefix(prefix)
    if name.startswith("micromamba"):
        cmd, what = [exe, "install", "--yes"], f"{name} install"
    else:
        cmd, what = [exe, "env", "update"], f"{name} env update"
    cmd += ["--prefix", str(prefix), "--file", str(env_yml)]
    console.info(f"installing {env_yml.name} with {name}")
    run_step(cmd, what=what, env=frontend_environ(virtual_packages))


def run_installer(installer: Path, prefix: Path, virtual_packages: Mapping[str, str] | None = None) -> None:
    """Install Miniforge (the base environment) at PREFIX; it solves, so it gets VIRTUAL_PACKAGES."""
    console.info(f"installing {installer.name} at {prefix}")
    run_step(["/bin/bash", str(installer), "-b", "-f", "-p", str(prefix)], what=f"installer {installer.name}",
             env=frontend_environ(virtual_packages))


def install_with_installer(installer: Path | None, env_yml: Path, prefix: Path, conda_exe: str,
                           virtual_packages: Mapping[str, str] | None = None, explicit: Path | None = None) -> None:
    """Install Miniforge at PREFIX (unless INSTALLER is None: done already), then the
    environment.yml's packages into that base environment with its own mamba or conda (both steps
    solve, so both get the VIRTUAL_PACKAGES of condainer.yml); with EXPLICIT, the lock's list."""
    env = frontend_environ(virtual_packages)
    if installer is not None:
        run_installer(installer, prefix, virtual_packages)
    for candidate in (conda_exe, "mamba", "conda"):
        exe = prefix / "bin" / candidate if candidate else None
        if exe and exe.exists():
            if explicit is not None:
                install_explicit(str(exe), explicit, prefix, virtual_packages)
                return
            console.info(f"installing {env_yml.name} with {candidate}")
            run_step([str(exe), "env", "update", "--prefix", str(prefix), "--file", str(env_yml)],
                     what=f"{candidate} env update", env=env)
            return
    raise BuildError(f"the installer provided neither mamba nor conda in {prefix}/bin")
