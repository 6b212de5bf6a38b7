"""The embedded conda builder: environment.yml solved and installed by py-rattler, no installer needed.

py-rattler 0.28 can crash at interpreter exit after a solve (a tokio worker racing shutdown), so
the solve and install run in a child process (``python -m condainer.build.environments.rattler_child``)
that ends with os._exit; the parent only sees its exit code and its one-line error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from condainer import console
from condainer.build.environments import virtual
from condainer.build.environments.envfile import EnvironmentFile
from condainer.build.environments.run import run_group
from condainer.errors import BuildError, child_reason


def cache_dir() -> Path:
    """Package and repodata cache, shared between builds of this user."""
    base = os.environ.get("CONDAINER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "condainer"
    )
    return Path(base) / "rattler"


def install_conda_packages(env: EnvironmentFile, prefix: Path,
                           virtual_packages: list[virtual.VirtualPackage], lock: dict | None = None) -> None:
    """Solve ENV's channels and specs for VIRTUAL_PACKAGES and install them into PREFIX (also
    writes its env variables); with LOCK, install exactly its conda packages, unsolved."""
    if lock is None:
        console.info(f"solving and installing {len(env.conda_specs)} conda specs from "
                     f"{', '.join(env.channels) or 'no channel'}")
    else:
        console.info(f"installing the {len(lock.get('conda') or [])} conda packages of condainer.lock (no solve)")
    request = {
        "channels": env.channels,
        "specs": env.conda_specs,
        "prefix": str(prefix),
        "cache_dir": str(cache_dir()),
        "variables": env.variables,
        "channel_alias": os.environ.get("CONDAINER_CHANNEL_ALIAS", "https://conda.anaconda.org/"),
        "root_dir": str(env.path.parent),
        "virtual_packages": virtual.records(virtual_packages),
        "locked": None if lock is None else lock.get("conda") or [],
        "platform": None if lock is None else lock["platform"],
    }
    proc = run_group(
        [sys.executable, "-m", "condainer.build.environments.rattler_child"],
        input=json.dumps(request),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if proc.returncode != 0:
        reason = child_reason(proc.stderr, proc.returncode)
        raise BuildError(f"conda environment from {env.path.name}: {reason}")
    if proc.stdout.strip():
        console.info(proc.stdout.strip())
