"""environment.yml: read and check it (name, channels, dependencies, pip section, variables)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from condainer.errors import ConfigError
from condainer.project.yamlfile import read_mapping


@dataclasses.dataclass
class EnvironmentFile:
    path: Path
    name: str
    channels: list[str]
    conda_specs: list[str]
    pip_requirements: list[str]
    variables: dict[str, str]


def read(path: Path) -> EnvironmentFile:
    """Parse PATH; any malformed part is a one-line ConfigError naming the file."""
    data = read_mapping(path, missing=f"{path} not found", what="with 'dependencies'")
    channels = data.get("channels") or []
    deps = data.get("dependencies") or []
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise ConfigError(f"{path}: 'channels' must be a list of channel names or URLs")
    if not isinstance(deps, list):
        raise ConfigError(f"{path}: 'dependencies' must be a list")
    specs: list[str] = []
    pip: list[str] = []
    for item in deps:
        if isinstance(item, str):
            specs.append(item)
        elif isinstance(item, dict) and set(item) == {"pip"} and isinstance(item["pip"], list):
            pip.extend(str(x) for x in item["pip"])
        else:
            raise ConfigError(f"{path}: unsupported dependency entry {item!r}")
    variables = data.get("variables") or {}
    if not isinstance(variables, dict):
        raise ConfigError(f"{path}: 'variables' must be a mapping")
    return EnvironmentFile(
        path=path,
        name=str(data.get("name") or "env"),
        channels=[c for c in channels if c != "nodefaults"],
        conda_specs=specs,
        pip_requirements=pip,
        variables={str(k): str(v) for k, v in variables.items()},
    )


def without_pip(env: EnvironmentFile, target: Path) -> Path:
    """ENV's file without its pip: section, written to TARGET: a conda frontend then installs the
    conda packages only, and our pip step installs the rest (so that pip's report can be locked)."""
    import yaml

    data = read_mapping(env.path, missing=f"{env.path} not found", what="with 'dependencies'")
    data["dependencies"] = [d for d in data.get("dependencies") or [] if not isinstance(d, dict)]
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target
