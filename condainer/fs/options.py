"""Settings shared by both pack backends (Python writer and mksquashfs)."""

from __future__ import annotations

import dataclasses
import os

from condainer.errors import ImageError
from condainer.fs.compression import WRITABLE, default_level

COMPRESSIONS = WRITABLE  # what both backends can pack with (the codec registry's writable entries)
DEFAULT_COMPRESSION = "zstd"
DEFAULT_BLOCK_SIZE = 128 * 1024


def max_processors() -> int:
    """The most compression threads (either backend) a pack may ask for.

    More compressors than CPUs make nothing faster; they only cost memory (a thread's stack and
    compressor plus the batches in flight) and, past some thousands, exhaust it: ``--processors
    99999`` once forked Python workers until the OOM killer came, and mksquashfs fails with "Failed
    to create thread". 4 x the CPUs leaves room for oversubscription; the floor of 64 lets a project
    configured on a big node still build on a small one, and 64 threads are harmless on any machine.
    """
    return max(64, 4 * (os.cpu_count() or 1))


@dataclasses.dataclass(frozen=True)
class PackOptions:
    """What to pack and how; both backends honour every field."""

    compression: str = DEFAULT_COMPRESSION
    level: int | None = None  # None: the registry's default level of the compression
    block_size: int = DEFAULT_BLOCK_SIZE
    processors: int | None = None  # None: the CPUs this process may use
    all_root: bool = False  # store uid/gid 0 for every inode
    progress: bool = True  # a progress bar on a terminal (never with -q)

    def __post_init__(self) -> None:
        # Checked here, where the CLI, `cnd build` and library callers all pass, before any process.
        if self.processors is not None and not 1 <= self.processors <= max_processors():
            raise ImageError(
                f"processors {self.processors}: must be from 1 to {max_processors()}"
                f" ({os.cpu_count()} CPUs here; more compressors than CPUs only cost memory)"
            )

    @property
    def effective_level(self) -> int | None:
        return self.level if self.level is not None else default_level(self.compression)
