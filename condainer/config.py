"""condainer.yml: defaults, loading, validation and saving.

Keys written by upstream Condainer keep their meaning (mount_base_directory, uuid, environment_yml,
requirements_txt, installer_url, conda_exe, user_env_name, non_conda_application,
multiuser_mountpoint); ours come with safe defaults, so an upstream condainer.yml works unchanged.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import uuid as uuidlib
from pathlib import Path
from typing import Any

import yaml

from condainer.backends import BACKENDS
from condainer.errors import ConfigError
from condainer.fs.compression import level_range
from condainer.fs.options import COMPRESSIONS, DEFAULT_BLOCK_SIZE, DEFAULT_COMPRESSION
from condainer.yamlfile import read_mapping

CONFIG_NAME = "condainer.yml"

HEADER = """\
# condainer project configuration (created by `cnd init`, may be edited by hand)
#
# mount_base_directory: where the environment is built and the image mounted (node-local, e.g. /tmp)
# environment_yml / requirements_txt: what to install; either may be missing, not both
# installer_url: a local Miniforge installer to use instead of the embedded builder (empty: none);
#                $CONDAINER_INSTALLER wins over it
# conda_exe: mamba, conda or micromamba to use instead of the embedded builder (empty: none)
# compression: zstd, gzip, xz, lz4 or none; compression_level: empty for the default
# backend: auto (native tools when present), native or python
"""


def defaults() -> dict[str, Any]:
    """A fresh configuration; every key has a safe default."""
    return {
        "mount_base_directory": "/tmp",
        "uuid": str(uuidlib.uuid4()),
        "environment_yml": "environment.yml",
        "requirements_txt": "requirements.txt",
        "installer_url": "",
        "conda_exe": "",
        "compression": DEFAULT_COMPRESSION,
        "compression_level": None,
        "block_size": DEFAULT_BLOCK_SIZE,
        "processors": None,
        "backend": "auto",
    }


# Keys of upstream Condainer that we read (or knowingly ignore) beside those of defaults().
UPSTREAM_KEYS = ("user_env_name", "non_conda_application", "multiuser_mountpoint")
UUID_RE = re.compile(r"[0-9A-Fa-f-]+")


def _expand_base(value: str, bad) -> str:
    """mount_base_directory with ~ and $VARS expanded; an unset variable is an error (expandvars
    would leave "$TMPDIR" in the path and build under a directory literally named so)."""
    for match in re.finditer(r"\$(\w+)|\$\{(\w+)\}", value):
        name = match.group(1) or match.group(2)
        if name not in os.environ:
            raise bad("mount_base_directory", f"${name} is not set")
    return os.path.expandvars(os.path.expanduser(value))


def _validate(cfg: dict[str, Any], path: Path) -> dict[str, Any]:
    """Check every key at load time, so that a bad value fails before anything is built."""
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {why}")

    known = [*defaults(), *UPSTREAM_KEYS]
    for key in cfg:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            # upstream files may carry keys we do not know: warn, do not fail
            print(f"cnd: warning: {path}: unknown key {key}{hint}; ignored", file=sys.stderr)
    text = str(cfg.get("uuid"))
    try:
        if not UUID_RE.fullmatch(text):
            raise ValueError(text)
        uuidlib.UUID(text)
    except ValueError:
        raise bad("uuid", f"{cfg.get('uuid')!r} is not a UUID (letters, digits and dashes)") from None
    base = cfg.get("mount_base_directory")
    if not isinstance(base, str):
        raise bad("mount_base_directory", "must be an absolute path")
    cfg["mount_base_directory"] = base = _expand_base(base, bad)
    if not os.path.isabs(base):
        raise bad("mount_base_directory", "must be an absolute path")
    if cfg.get("compression") not in COMPRESSIONS:
        raise bad("compression", f"must be one of {', '.join(COMPRESSIONS)}")
    if cfg.get("backend") not in BACKENDS:
        raise bad("backend", f"must be one of {', '.join(BACKENDS)}")
    for key in ("compression_level", "processors", "block_size"):
        value = cfg.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise bad(key, "must be a positive integer or empty")
    size = cfg.get("block_size")
    if size is not None and (size < 4096 or size > 1 << 20 or size & (size - 1)):
        raise bad("block_size", f"{size} is not a power of two from 4096 to 1048576")
    level, compression = cfg.get("compression_level"), cfg["compression"]
    if level is not None:
        levels = level_range(compression)
        if levels is None:
            raise bad("compression_level", f"{compression} takes no level: leave it empty")
        lo, hi = levels
        if not lo <= level <= hi:
            raise bad("compression_level", f"{compression} level must be {lo}..{hi}, not {level}")
    return cfg


def load(project_dir: os.PathLike | str) -> dict[str, Any]:
    """Read condainer.yml of PROJECT_DIR, filled up with defaults for keys it lacks."""
    path = Path(project_dir) / CONFIG_NAME
    data = read_mapping(path, missing=f"{path} not found: run `cnd init` first (or pass -d PROJECT_DIR)",
                        what="of keys to values")
    cfg = defaults()
    cfg.pop("uuid")
    cfg.update({k: v for k, v in data.items() if v is not None or k not in cfg})
    if "uuid" not in cfg:
        raise ConfigError(f"{path}: uuid is missing")
    cfg["installer_url"] = cfg.get("installer_url") or ""
    cfg["conda_exe"] = cfg.get("conda_exe") or ""
    return _validate(cfg, path)


def save(project_dir: os.PathLike | str, cfg: dict[str, Any], *, exclusive: bool = False) -> Path:
    """Write condainer.yml; with ``exclusive`` fail if it exists (never overwrite a user's file)."""
    path = Path(project_dir) / CONFIG_NAME
    text = HEADER + yaml.safe_dump(cfg, sort_keys=False)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        raise ConfigError(f"{path} already exists: this directory is a condainer project already") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path
