"""Settings shared by both pack backends (Python writer and mksquashfs)."""

from __future__ import annotations

import dataclasses

COMPRESSIONS = ("zstd", "gzip", "xz", "lz4", "none")

# zstd level 6: see README "Choosing the default compression level" for the measured size/time table.
DEFAULT_COMPRESSION = "zstd"
DEFAULT_LEVEL = {"zstd": 6, "gzip": 9, "xz": None, "lz4": None, "none": None}
DEFAULT_BLOCK_SIZE = 128 * 1024


@dataclasses.dataclass(frozen=True)
class PackOptions:
    """What to pack and how; both backends honour every field."""

    compression: str = DEFAULT_COMPRESSION
    level: int | None = None  # None: DEFAULT_LEVEL[compression]
    block_size: int = DEFAULT_BLOCK_SIZE
    processors: int | None = None  # None: the CPUs this process may use
    all_root: bool = False  # store uid/gid 0 for every inode
    progress: bool = True  # a progress bar on a terminal (never with -q)

    @property
    def effective_level(self) -> int | None:
        return self.level if self.level is not None else DEFAULT_LEVEL[self.compression]
