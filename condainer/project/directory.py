"""A condainer project directory: where its image, mount point, staging and state live."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from condainer.fs.options import PackOptions
from condainer.project import config
from condainer.project.layout import DEFAULT_MOUNT_MODE, Layout


@dataclasses.dataclass
class Project:
    directory: Path
    cfg: dict[str, Any]

    @classmethod
    def load(cls, directory: os.PathLike | str, *, remember_for_exec: bool = False) -> Project:
        directory = Path(directory).absolute()
        return cls(directory, config.load(directory, remember_for_exec=remember_for_exec))

    @property
    def layout(self) -> Layout:
        """Where the image, mount point and state live (layout.py holds the rules)."""
        cfg = self.cfg
        return Layout(str(self.directory), str(cfg["uuid"]), cfg["mount_base_directory"],
                      multiuser=bool(cfg.get("multiuser_mountpoint")),
                      user_env_name=str(cfg.get("user_env_name") or ""), backend=cfg["backend"],
                      mount_mode=cfg.get("mount_mode") or DEFAULT_MOUNT_MODE)

    @property
    def uuid(self) -> str:
        return str(self.cfg["uuid"])

    @property
    def image(self) -> Path:
        return Path(self.layout.image)

    @property
    def mount_base(self) -> Path:
        return Path(self.layout.mount_base)

    @property
    def mountpoint(self) -> Path:
        return Path(self.layout.mountpoint)

    @property
    def state_dir(self) -> Path:
        return Path(self.layout.state_dir)

    @property
    def env_prefix(self) -> Path:
        return Path(self.layout.env_prefix)

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
