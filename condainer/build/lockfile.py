"""condainer.lock: exactly what an image was built from, so that a build can be repeated.

Why our own document and not an existing lock format: conda's ``@EXPLICIT`` list (``url#sha256``
per package) is what conda, mamba and micromamba all install without a solve, but it has no room
for pip packages, the virtual packages of the solve or the files it was solved from; py-rattler's
lock (pixi's format) needs rattler to read it and leaves the conda executables out. So the lock is
a small JSON document whose conda part is an @EXPLICIT list with names beside each URL (written out
verbatim for a frontend), and whose pip part is what ``pip install --require-hashes`` needs.

The same bytes are stored in the image at ``.condainer/condainer.lock`` under the environment's
prefix (not in conda-meta/: a venv has none, and a conda-meta/ would make it look like a conda
environment to activation), so an image says what it holds wherever it is copied.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

from condainer.errors import ConfigError, ImageError
from condainer.fs.atomic import write_atomically

LOCK_NAME = "condainer.lock"
IN_IMAGE = ".condainer/condainer.lock"  # relative to the environment's prefix (the mount point)
FORMAT = 1

_SUBDIRS = {("linux", "x86_64"): "linux-64", ("linux", "aarch64"): "linux-aarch64",
            ("linux", "ppc64le"): "linux-ppc64le", ("darwin", "x86_64"): "osx-64",
            ("darwin", "arm64"): "osx-arm64"}


def this_platform() -> str:
    """conda's name for this machine (linux-64, ...): a lock is only valid where it was made."""
    system = "darwin" if sys.platform == "darwin" else sys.platform.rstrip("0123456789")
    return _SUBDIRS.get((system, platform.machine()), f"{system}-{platform.machine()}")


def file_sha256(path: os.PathLike | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def sources(files: dict[str, Path | None]) -> dict[str, str]:
    """{name as condainer.yml gives it: sha256} of the environment files that exist."""
    return {name: file_sha256(path) for name, path in sorted(files.items()) if path is not None and path.is_file()}


def make(prefix: Path, *, sources_: dict[str, str], virtual_packages: list[dict[str, str]],
         virtual_overrides: dict[str, str], python: dict[str, str] | None, builder: str, epoch: int,
         installer: dict[str, str] | None = None, pip_options: list[str] | None = None,
         consume_reports: bool = True) -> dict[str, Any]:
    """The lock of the environment installed at PREFIX, read back from it (see installed.py)."""
    from condainer.build.environments import installed

    return {
        "condainer_lock": FORMAT,
        "platform": this_platform(),
        "sources": sources_,
        "builder": builder,
        "installer": installer,
        "virtual_packages": virtual_packages,
        "virtual_overrides": virtual_overrides,
        "host_python": python,
        "source_date_epoch": epoch,
        "conda": installed.conda_packages(prefix),
        "pip": installed.pip_packages(prefix, consume=consume_reports),
        "pip_options": pip_options or [],
    }


def difference(lock: dict[str, Any], made: dict[str, Any]) -> str | None:
    """How the environment that was installed (MADE) differs from LOCK, in a few words; None: not."""
    from condainer.build.environments.pipsources import identity

    def conda_identity(p: dict[str, Any]) -> tuple[str, ...]:
        return tuple(p[k] for k in ("name", "version", "build", "sha256"))

    for kind, key in (("conda", conda_identity), ("pip", identity)):
        want = {key(p) for p in lock.get(kind) or []}
        got = {key(p) for p in made.get(kind) or []}
        if want != got:
            extra, missing = sorted(got - want), sorted(want - got)
            parts = ([f"{'-'.join(extra[0][:-1])} not in the lock"] if extra else []) + (
                [f"{'-'.join(missing[0][:-1])} missing"] if missing else [])
            return f"{kind} packages: {', '.join(parts)}"
    return None


def render(lock: dict[str, Any]) -> bytes:
    """The lock as stored: stable key order and layout, so equal locks are equal bytes."""
    return (json.dumps(lock, indent=1, sort_keys=True) + "\n").encode()


def write(path: Path, data: bytes) -> None:
    """Write DATA to PATH atomically and durably: never half a lock, also after a crash."""
    write_atomically(str(path), data, durable=True)


def parse(data: bytes, where: str) -> dict[str, Any]:
    """A lock from its bytes; anything that is not one of ours is a one-line ConfigError."""
    try:
        lock = json.loads(data)
    except ValueError as exc:
        raise ConfigError(f"{where}: not a condainer lock ({exc.args[0]})") from None
    if not isinstance(lock, dict) or lock.get("condainer_lock") != FORMAT:
        raise ConfigError(f"{where}: not a condainer lock of format {FORMAT}: run `cnd lock` to write it anew")
    return lock


def load(path: Path) -> dict[str, Any]:
    try:
        return parse(path.read_bytes(), str(path))
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run `cnd lock` (or a `cnd build`) to write it") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def unpinned(lock: dict[str, Any]) -> list[str]:
    """Names of the lock's conda packages that it cannot install exactly (no URL or sha256: their
    installer did not record one)."""
    return [p.get("name") or "?" for p in lock.get("conda") or [] if not (p.get("url") and p.get("sha256"))]


def stale_reason(lock: dict[str, Any], current: dict[str, str], lock_path: Path) -> str | None:
    """Why LOCK does not describe the environment files as they are now (CURRENT), or None."""
    recorded = lock.get("sources") or {}
    changed = sorted(name for name in set(recorded) | set(current) if recorded.get(name) != current.get(name))
    if not changed:
        return None
    what = ", ".join(f"{n} {'is new' if n not in recorded else 'is gone' if n not in current else 'changed'}"
                     for n in changed)
    return f"{what} since {lock_path.name} was written: run `cnd lock` to update it (or build without --locked)"


def explicit(lock: dict[str, Any]) -> str:
    """The conda packages as an @EXPLICIT file, which conda, mamba and micromamba install unsolved."""
    lines = ["# written by condainer from condainer.lock", f"# platform: {lock['platform']}", "@EXPLICIT"]
    lines += [f"{p['url']}#{p['sha256']}" for p in lock.get("conda") or []]
    return "\n".join(lines) + "\n"


def summary(lock: dict[str, Any]) -> str:
    """``12 conda + 3 pip packages for linux-64``: one line for status and image info."""
    return (f"{len(lock.get('conda') or [])} conda + {len(lock.get('pip') or [])} pip packages "
            f"for {lock.get('platform')}")


def read_from_image(image: os.PathLike | str) -> bytes | None:
    """The lock stored in IMAGE, or None when it has none. unsquashfs when it is on PATH (no
    Python reader needed), else our own reader; an unreadable image is an ImageError."""
    import shutil
    import subprocess

    tool = shutil.which("unsquashfs")
    if tool:
        try:
            proc = subprocess.run([tool, "-cat", os.fspath(image), IN_IMAGE], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            proc = None
        if proc is not None and proc.returncode == 0:
            return proc.stdout
        if proc is not None and re.search(rb"not found|no matches", proc.stderr + proc.stdout, re.IGNORECASE):
            return None
    return _read_with_python(image)


def _read_with_python(image: os.PathLike | str) -> bytes | None:
    from condainer.fs.reader import SquashfsReader

    with SquashfsReader(image) as reader:
        node = reader.resolve("/" + IN_IMAGE)
        if node is None or not node.is_reg:
            return None
        return reader.read(node, 0, node.size)


def image_lock_state(image: os.PathLike | str, project_lock: Path | None) -> dict[str, Any]:
    """Whether IMAGE holds a lock and whether it is byte for byte PROJECT_LOCK (None: not asked):
    {"lock": "none" | "present" | "unreadable", "matches_project": bool | None, "summary": str}."""
    try:
        data = read_from_image(image)
    except (ImageError, OSError) as exc:
        return {"lock": "unreadable", "matches_project": None, "summary": str(exc).split("\n")[0]}
    if data is None:
        return {"lock": "none", "matches_project": None, "summary": "no lock in the image"}
    try:
        text = summary(parse(data, "lock in the image"))
    except ConfigError as exc:
        text = exc.message
    matches = None
    if project_lock is not None:
        try:
            matches = project_lock.read_bytes() == data
        except OSError:
            matches = None
    return {"lock": "present", "matches_project": matches, "summary": text,
            "sha256": hashlib.sha256(data).hexdigest()}
