"""Bytes, metadata blocks and lookup-table indexes ("Metadata Blocks", "Storing Lookup Tables").

The bottom of the reader: every other part reads the image through ``_pread`` (bounds-checked
``os.pread``: threads share no file position), ``metablock`` / ``_meta_read`` (a metadata stream read
across 8 KiB blocks, through a bounded cache) and ``_inflate`` (a decompressor from a pool, output
bounded by what the format allows).
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING

from condainer.fs import format as fmt
from condainer.fs.compression import BY_ID, CodecUnavailable
from condainer.fs.reader.cache import LRUCache
from condainer.fs.reader.damaged import DamagedImage
from condainer.fs.reader.superblock import SuperInfo

if TYPE_CHECKING:
    from condainer.fs.compression import Decompress

METADATA_SIZE = fmt.METADATA_SIZE


class MetadataReader:
    """The image file, its superblock and its metadata stream; the base of SquashfsReader."""

    path: str
    file_size: int
    sb: SuperInfo
    sb_end: int  # bytes_used: nothing is read past it
    _fd: int
    _decompressors: list[Decompress]
    _meta: LRUCache

    def _first_decompressor(self) -> Decompress:
        """A decompressor, made at open so that an unsupported compressor fails there, with a
        message that names the image like every other reason an image cannot be opened (``cnd
        image mount`` shows it as it is; check and info add the path only when it is missing)."""
        try:
            return BY_ID[self.sb.compression_id].decompressor()
        except CodecUnavailable as e:
            raise DamagedImage(f"{self.path}: {e.message}") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> MetadataReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pread(self, pos: int, size: int, what: str) -> bytes:
        if pos < 0 or size < 0 or pos + size > self.sb_end:
            raise DamagedImage(f"{what} at {pos}+{size} lies outside the image ({self.sb_end} bytes)")
        data = os.pread(self._fd, size, pos)
        if len(data) != size:
            raise DamagedImage(f"{what} at {pos}: image truncated")
        return data

    def _inflate(self, data: bytes, limit: int, what: str) -> bytes:
        # Decompressors are not thread-safe, so each call takes one from a pool and gives it back.
        # Not threading.local: libfuse's worker threads are foreign to Python, and ctypes drops
        # their thread state (and its locals) after every callback.
        pool = self._decompressors
        try:
            decompress = pool.pop()
        except IndexError:
            decompress = BY_ID[self.sb.compression_id].decompressor()
        try:
            out = decompress(data, limit)
        except DamagedImage:
            raise
        except Exception as e:  # every codec has its own error type; all mean damage here
            raise DamagedImage(f"{what}: cannot decompress: {e}") from None
        pool.append(decompress)  # only after success: a failed one may hold a broken state
        if len(out) > limit:
            raise DamagedImage(f"{what}: inflates to {len(out)} bytes, more than {limit}")
        return out

    def metablock(self, pos: int) -> tuple[bytes, int]:
        """The 8 KiB metadata block stored at absolute ``pos`` and the position of the next one."""
        hit = self._meta.get(pos)
        if hit is not None:
            return hit
        (header,) = fmt.U16.unpack(self._pread(pos, 2, "metadata block header"))
        size = header & fmt.METADATA_SIZE_MASK
        if size == 0 or size > METADATA_SIZE:
            raise DamagedImage(f"metadata block at {pos}: bad size {size}")
        data = self._pread(pos + 2, size, "metadata block")
        if not header & fmt.METADATA_UNCOMPRESSED:
            data = self._inflate(data, METADATA_SIZE, f"metadata block at {pos}")
        if not data:
            raise DamagedImage(f"metadata block at {pos}: empty")
        entry = (data, pos + 2 + size)
        self._meta.put(pos, entry, len(data) + 100)
        return entry

    def _meta_read(self, pos: int, offset: int, size: int, what: str) -> tuple[bytes, int, int]:
        """``size`` bytes of a metadata stream from (block at ``pos``, ``offset``); returns the
        bytes and the position right after them."""
        block, nxt = self.metablock(pos)
        if offset > len(block):
            raise DamagedImage(f"{what}: offset {offset} beyond its metadata block at {pos}")
        end = offset + size
        if end < len(block):
            return block[offset:end], pos, end
        if end == len(block):
            return block[offset:], nxt, 0
        parts = [block[offset:]]
        have = len(block) - offset
        while True:
            if nxt >= self.sb_end:
                raise DamagedImage(f"{what}: runs past the end of its table")
            pos = nxt
            block, nxt = self.metablock(pos)
            take = min(size - have, len(block))
            parts.append(block[:take])
            have += take
            if have == size:
                if take == len(block):
                    return b"".join(parts), nxt, 0
                return b"".join(parts), pos, take

    def _read_index(self, start: int, nbytes: int, what: str) -> list[int]:
        """The u64 list of metadata block positions that a lookup table's superblock entry points at."""
        if nbytes == 0:
            return []
        count = -(-nbytes // METADATA_SIZE)
        raw = self._pread(start, 8 * count, f"{what} index")
        index = [v for (v,) in fmt.U64.iter_unpack(raw)]
        for pos in index:
            if pos >= self.sb_end:
                raise DamagedImage(f"{what}: block position {pos} beyond the end of the image")
        return index

    def _read_lookup_table(self, start: int, count: int, entry_size: int, what: str) -> bytes:
        """All COUNT entries of a small lookup table (the id table), as one byte string."""
        nbytes = count * entry_size
        parts = []
        for i, pos in enumerate(self._read_index(start, nbytes, what)):
            block, _ = self.metablock(pos)
            want = min(METADATA_SIZE, nbytes - i * METADATA_SIZE)
            if len(block) < want:
                raise DamagedImage(f"{what}: block {i} holds {len(block)} bytes, expected {want}")
            parts.append(block[:want])
        return b"".join(parts)

    def _table_entry(self, index: list[int], n: int, entry: struct.Struct, what: str) -> tuple:
        """Entry N of a lookup table whose block positions are INDEX."""
        pos_in_table = n * entry.size
        block_no, offset = divmod(pos_in_table, METADATA_SIZE)
        if block_no >= len(index):
            raise DamagedImage(f"{what} entry {n} does not exist")
        block, _ = self.metablock(index[block_no])
        if offset + entry.size > len(block):
            raise DamagedImage(f"{what} entry {n}: its block is too short")
        return entry.unpack_from(block, offset)
