"""Compressor registry: how each squashfs compressor is driven from Python, and its options block.

Rules the readers enforce (squashfs-tools-ng doc/format.adoc "Compression Options"):
- "gzip" is a zlib stream (no gzip header);
- zstd frames must record their content size (PySquashfsImage's decompressor needs it);
- xz streams use LZMA2 with a dictionary no larger than the block size and a CRC32 check (the
  kernel's xz_dec rejects anything else);
- the options block is written exactly when mksquashfs writes one (gzip level != 9, zstd level != 15,
  lz4 always, xz never for our settings), and it must be valid.

A Codec is plain data so it pickles into worker processes; ``compressor()`` builds the callable there.
"""

from __future__ import annotations

import dataclasses
import lzma
import struct
import zlib
from collections.abc import Callable

from condainer.errors import ImageError
from condainer.fs import format as fmt

LEVELS = {"zstd": (1, 22), "gzip": (1, 9), "xz": (0, 9), "lz4": (1, 12)}


@dataclasses.dataclass(frozen=True)
class Codec:
    """One compressor with its settings; compresses whole blocks, never streams across blocks."""

    name: str  # zstd | gzip | xz | lz4 | none
    level: int | None
    block_size: int

    @property
    def squashfs_id(self) -> int:
        # "none" has no id of its own: mksquashfs -noI -noD -noF -noX keeps gzip and sets flags.
        return {
            "zstd": fmt.COMP_ZSTD,
            "gzip": fmt.COMP_GZIP,
            "xz": fmt.COMP_XZ,
            "lz4": fmt.COMP_LZ4,
            "none": fmt.COMP_GZIP,
        }[self.name]

    @property
    def uncompressed_flags(self) -> int:
        if self.name != "none":
            return 0
        return (
            fmt.FLAG_UNCOMPRESSED_INODES
            | fmt.FLAG_UNCOMPRESSED_DATA
            | fmt.FLAG_UNCOMPRESSED_FRAGMENTS
            | fmt.FLAG_UNCOMPRESSED_XATTRS
            | fmt.FLAG_UNCOMPRESSED_IDS
        )

    def options_block(self) -> bytes:
        """The compressor options payload, or b"" where mksquashfs writes none."""
        if self.name == "zstd" and self.level != 15:
            return struct.pack("<I", self.level)
        if self.name == "gzip" and self.level != 9:
            return struct.pack("<IHH", self.level, 15, 0)
        if self.name == "lz4":
            return struct.pack("<II", 1, 1 if self.level is not None else 0)
        return b""

    def compressor(self) -> Callable[[bytes], bytes]:
        """A function bytes -> compressed bytes (the caller decides whether to keep it)."""
        level = self.level
        if self.name == "zstd":
            import zstandard

            cctx = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False)
            return cctx.compress
        if self.name == "gzip":
            return lambda data: zlib.compress(data, level)
        if self.name == "xz":
            filters = [
                {
                    "id": lzma.FILTER_LZMA2,
                    "preset": 6 if level is None else level,
                    "dict_size": self.block_size,
                }
            ]
            return lambda data: lzma.compress(
                data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=filters
            )
        if self.name == "lz4":
            import lz4.block

            if level is None:
                return lambda data: lz4.block.compress(data, store_size=False)
            return lambda data: lz4.block.compress(
                data, mode="high_compression", compression=level, store_size=False
            )
        return lambda data: data


def make_codec(name: str, level: int | None, block_size: int) -> Codec:
    """Validate the settings (one-line ImageError) and return the codec."""
    if name not in ("zstd", "gzip", "xz", "lz4", "none"):
        raise ImageError(f"unknown compression {name!r}: choose zstd, gzip, xz, lz4 or none")
    if block_size < fmt.MIN_BLOCK_SIZE or block_size > fmt.MAX_BLOCK_SIZE or block_size & (block_size - 1):
        raise ImageError(f"block size {block_size}: must be a power of two from 4 KiB to 1 MiB")
    if name == "zstd" and level is None:
        level = 15
    if name == "gzip" and level is None:
        level = 9
    if name == "none":
        level = None
    if level is not None:
        lo, hi = LEVELS[name]
        if not lo <= level <= hi:
            raise ImageError(f"{name} level {level}: must be between {lo} and {hi}")
    if name == "lz4":
        try:
            import lz4.block  # noqa: F401
        except ImportError as exc:
            raise ImageError("lz4 compression needs the lz4 package: pip install lz4") from exc
    return Codec(name, level, block_size)
