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

from condainer.errors import ConfigError
from condainer.fs.compression import block_size_problem, level_problem
from condainer.fs.options import COMPRESSIONS, DEFAULT_BLOCK_SIZE, DEFAULT_COMPRESSION
from condainer.project.layout import (
    BACKENDS,
    CONFIG_NAME,
    DEFAULT_BACKEND,
    DEFAULT_MOUNT_BASE,
    DEFAULT_MOUNT_MODE,
    MOUNT_MODES,
    expand_base,
    unset_variable,
    write_cache,
)
from condainer.project.virtual_packages import KINDS, YML_KEY
from condainer.project.yamlfile import read_mapping_and_text

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
# virtual_packages: what the compute nodes have when it differs from this machine, e.g.
#                   {cuda: "12.4", glibc: "2.28", archspec: x86_64_v3}; wins over CONDA_OVERRIDE_*
# mount_mode: auto (default: a private mount in a user namespace where the kernel allows it),
#             namespace, or host (the node's own mount table, shared through a reference count)
# launchers: all (default), none, or a list such as [python, snakemake]: `cnd build` writes one
#            launcher per executable into bin/ (<project>/bin/python runs the env's python)
"""


def defaults() -> dict[str, Any]:
    """A fresh configuration; every key has a safe default."""
    return {
        "mount_base_directory": DEFAULT_MOUNT_BASE,
        "uuid": str(uuidlib.uuid4()),
        "environment_yml": "environment.yml",
        "requirements_txt": "requirements.txt",
        "installer_url": "",
        "conda_exe": "",
        "compression": DEFAULT_COMPRESSION,
        "compression_level": None,
        "block_size": DEFAULT_BLOCK_SIZE,
        "processors": None,
        "backend": DEFAULT_BACKEND,
    }


# Keys of upstream Condainer that we read (or knowingly ignore) beside those of defaults().
UPSTREAM_KEYS = ("user_env_name", "non_conda_application", "multiuser_mountpoint")
# Our keys that `cnd init` does not write: absent means empty.
OPTIONAL_KEYS = (YML_KEY, "launchers", "mount_mode")
UUID_RE = re.compile(r"[0-9A-Fa-f-]+")


def unknown_keys(cfg: dict[str, Any]) -> list[str]:
    """Keys of CFG that neither we nor upstream Condainer know (warned about, then ignored)."""
    known = [*defaults(), *UPSTREAM_KEYS, *OPTIONAL_KEYS]
    return [str(key) for key in cfg if key not in known]


def _validate(cfg: dict[str, Any], path: Path) -> dict[str, Any]:
    """Check every key at load time, so that a bad value fails before anything is built."""
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {why}")

    for key in unknown_keys(cfg):
        close = difflib.get_close_matches(key, [*defaults(), *UPSTREAM_KEYS, *OPTIONAL_KEYS], n=1)
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
    missing = unset_variable(base)
    if missing is not None:
        raise bad("mount_base_directory", f"${missing} is not set")
    cfg["mount_base_directory"] = base = expand_base(base)
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
    problem = block_size_problem(size) if size is not None else None
    if problem:
        raise bad("block_size", problem)
    level, compression = cfg.get("compression_level"), cfg["compression"]
    problem = level_problem(compression, level) if level is not None else None
    if problem:
        raise bad("compression_level", problem + (": leave it empty" if "takes no level" in problem else ""))
    mode = cfg.get("mount_mode") or DEFAULT_MOUNT_MODE
    if mode not in MOUNT_MODES:
        raise bad("mount_mode", f"must be one of {', '.join(MOUNT_MODES)}, not {mode!r}")
    cfg["mount_mode"] = mode
    cfg[YML_KEY] = _virtual_packages(cfg.get(YML_KEY), path, bad)
    cfg["launchers"] = _launchers(cfg.get("launchers"), bad)
    return cfg


def _launchers(value: Any, bad) -> str | list[str]:
    """`launchers:` as "all" (also when absent), "none", or a list of executable names of the
    environment's bin/ (launchers.py writes one per name into <project>/bin/)."""
    if value is None or value == "all":
        return "all"
    if value == "none":
        return "none"
    if not isinstance(value, list):
        raise bad("launchers", f"must be all, none or a list of names of the environment's bin/, not {value!r}")
    for name in value:
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name \
                or name != name.strip() or "\n" in name:
            raise bad("launchers", f"{name!r} is not a file name in bin/ (e.g. [python, snakemake])")
    return list(dict.fromkeys(value))


def _virtual_packages(value: Any, path: Path, bad) -> dict[str, str]:
    """virtual_packages as {name: string}. A number is taken as written in the file, not as YAML
    read it: unquoted, 12.10 is the float 12.1, and CUDA 12.1 is not CUDA 12.10."""
    if value is None:
        return {}
    names = ", ".join(KINDS)
    if not isinstance(value, dict):
        raise bad(YML_KEY, f"must be a mapping of {names} to versions, e.g. {{cuda: \"12.4\"}}")
    written = _scalars_as_written(path, YML_KEY) if any(type(v) in (int, float) for v in value.values()) else {}
    result = {}
    for name, item in value.items():
        if name not in KINDS:
            raise bad(f"{YML_KEY}: {name}", f"unknown virtual package; known: {names}")
        if type(item) in (int, float):
            item = written.get(name, str(item))
        if not isinstance(item, str):
            raise bad(f"{YML_KEY}: {name}", f"must be a quoted string such as \"12.4\" (\"\" removes __{name}), "
                                            f"not {item!r}")
        problem = KINDS[name].problem(item.strip())
        if problem:
            raise bad(f"{YML_KEY}: {name}", problem)
        result[name] = item.strip()
    return result


def _scalars_as_written(path: Path, key: str) -> dict[str, str]:
    """The plain scalars of the mapping under top-level KEY of PATH, as the file spells them."""
    try:
        root = yaml.compose(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    for key_node, value_node in getattr(root, "value", []):
        if getattr(key_node, "value", None) == key and isinstance(value_node, yaml.MappingNode):
            return {k.value: v.value for k, v in value_node.value
                    if isinstance(k, yaml.ScalarNode) and isinstance(v, yaml.ScalarNode)}
    return {}


def load(project_dir: os.PathLike | str, *, remember_for_exec: bool = False) -> dict[str, Any]:
    """Read condainer.yml of PROJECT_DIR, filled up with defaults for keys it lacks; with
    REMEMBER_FOR_EXEC also leave the cache that `cnd exec` reads instead (see layout.py)."""
    path = Path(project_dir) / CONFIG_NAME
    data, text = read_mapping_and_text(
        path, missing=f"{path} not found: run `cnd init` first (or pass -d PROJECT_DIR)", what="of keys to values")
    cfg = defaults()
    cfg.pop("uuid")
    cfg.update({k: v for k, v in data.items() if v is not None or k not in cfg})
    if "uuid" not in cfg:
        raise ConfigError(f"{path}: uuid is missing")
    cfg["installer_url"] = cfg.get("installer_url") or ""
    cfg["conda_exe"] = cfg.get("conda_exe") or ""
    raw = dict(cfg)
    cfg = _validate(cfg, path)
    if remember_for_exec and not unknown_keys(cfg):
        # `cnd exec` on every rank then reads the few values it needs without PyYAML (layout.py);
        # a file that warns keeps warning, so it is read in full each time.
        write_cache(str(Path(project_dir).absolute()), text, raw)
    return cfg


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
