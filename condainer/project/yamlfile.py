"""Reading the YAML files users write (condainer.yml, environment.yml) with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from condainer.errors import ConfigError


def read_mapping(path: Path, *, missing: str, what: str) -> dict[str, Any]:
    """PATH parsed as a YAML mapping; MISSING is the message when it does not exist, WHAT says what
    the mapping must hold. Every failure is a ConfigError naming the file (and the line)."""
    return read_mapping_and_text(path, missing=missing, what=what)[0]


def read_mapping_and_text(path: Path, *, missing: str, what: str) -> tuple[dict[str, Any], bytes]:
    """read_mapping, and the exact bytes it was parsed from (what layout's cache is keyed on)."""
    try:
        raw = path.read_bytes()
        text = raw.decode()
    except FileNotFoundError:
        raise ConfigError(missing) from None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path} is not UTF-8 text: byte 0x{exc.object[exc.start]:02x} on line {line}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping {what}")
    return data, raw
