"""A condainer project directory: where its image, mount point, staging and state live."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from condainer import config
from condainer.fs.options import PackOptions
from condainer.sysinfo import hostname


@dataclasses.dataclass
class Project:
    directory: Path
    cfg: dict[str, Any]

    @classmethod
    def load(cls, directory: os.PathLike | str) -> Project:
        directory = Path(directory).absolute()
        return cls(directory, config.load(directory))

    @property
    def uuid(self) -> str:
        return str(self.cfg["uuid"])

    @property
    def image(self) -> Path:
        """The image, ``<uuid>.squashfs`` in the project directory (upstream's convention)."""
        return self.directory / f"{self.uuid}.squashfs"

    @property
    def mount_base(self) -> Path:
        return Path(os.path.expandvars(self.cfg["mount_base_directory"]))

    @property
    def mountpoint(self) -> Path:
        """The staging directory at build time and the mount point afterwards: the same path."""
        suffix = f"-{os.getuid()}" if self.cfg.get("multiuser_mountpoint") else ""
        return self.mount_base / f"condainer-{self.uuid}{suffix}"

    @property
    def state_dir(self) -> Path:
        """Per-node, per-user state beside the mount point (lock, running execs, mount log)."""
        return self.mount_base / f".condainer-{self.uuid}-{os.getuid()}-{hostname()}"

    @property
    def env_prefix(self) -> Path:
        """The environment to activate: the mount point, or the nested envs/<user_env_name> of an image
        built by upstream Condainer (when the mounted image has it; `cnd build` ignores the key)."""
        name = self.cfg.get("user_env_name")
        nested = self.mountpoint / "envs" / str(name)
        return nested if name and nested.is_dir() else self.mountpoint

    def path_of(self, key: str) -> Path | None:
        """environment_yml / requirements_txt as absolute paths, or None when not configured."""
        value = self.cfg.get(key)
        if not value:
            return None
        p = Path(os.path.expandvars(str(value)))
        return p if p.is_absolute() else self.directory / p

    def pack_options(self, *, progress: bool = True) -> PackOptions:
        return PackOptions(
            compression=self.cfg["compression"],
            level=self.cfg.get("compression_level"),
            block_size=int(self.cfg.get("block_size") or PackOptions.block_size),
            processors=self.cfg.get("processors"),
            progress=progress,
        )

    @property
    def activate_script(self) -> Path:
        return self.directory / "activate"

    @property
    def deactivate_script(self) -> Path:
        return self.directory / "deactivate"
