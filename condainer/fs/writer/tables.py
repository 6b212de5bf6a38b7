"""The lookup tables at the end of the image: id, fragment, export and xattr ("Storing Lookup Tables").

Every table is its entries in metadata blocks followed by an uncompressed list of u64 absolute
positions of those blocks; one helper writes that shape for all of them. The kernel insists these
tables sit back to back (the id index must end exactly where the xattr key/values begin or at
bytes_used, the export index exactly at the first id block), so each helper takes the position it
will be written at and returns bytes to write there with nothing in between.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable

from condainer.errors import ImageError
from condainer.fs import format as fmt
from condainer.fs.compression import Codec
from condainer.fs.writer.metablock import MetadataWriter


def lookup_table(entries: bytes, position: int, codec: Codec) -> tuple[bytes, int]:
    """(metadata blocks + index, absolute position of the index) for a table written at ``position``."""
    mw = MetadataWriter(codec)
    mw.write(entries)
    blocks = mw.finish()
    index = b"".join(fmt.U64.pack(position + start) for start in mw.chunk_starts())
    return blocks + index, position + len(blocks)


class IdTable:
    """uid/gid values, in order of first use; inodes store a u16 index into it."""

    def __init__(self) -> None:
        self._index: dict[int, int] = {}

    def index(self, value: int) -> int:
        found = self._index.get(value)
        if found is None:
            if len(self._index) >= fmt.MAX_IDS:
                raise ImageError(f"too many distinct uids and gids: squashfs stores at most {fmt.MAX_IDS}")
            found = self._index[value] = len(self._index)
        return found

    def __len__(self) -> int:
        return len(self._index)

    def entries(self) -> bytes:
        return b"".join(fmt.U32.pack(v & 0xFFFFFFFF) for v in self._index)


def fragment_entries(fragments: Iterable[tuple[int, int]]) -> bytes:
    return b"".join(fmt.FRAGMENT_ENTRY.pack(start, word, 0) for start, word in fragments)


def export_entries(refs: array) -> bytes:
    """The u64 inode references, little-endian, straight from the array: joining one packed bytes
    object per inode held about 140 bytes per inode at once, the largest peak of a pack."""
    if sys.byteorder == "big":
        refs = array(refs.typecode, refs)
        refs.byteswap()
    return refs.tobytes()


class XattrTable:
    """Key/value sets, each written once however many inodes share it; values stored inline."""

    def __init__(self, codec: Codec) -> None:
        self._kv = MetadataWriter(codec)
        self._codec = codec
        self._ids: dict[tuple, int] = {}
        self._entries: list[bytes] = []

    def index(self, pairs: tuple[tuple[bytes, bytes], ...]) -> int:
        """Index of this set in the xattr id table (NO_XATTR for none)."""
        if not pairs:
            return fmt.NO_XATTR
        found = self._ids.get(pairs)
        if found is not None:
            return found
        ref = self._kv.reference()
        # The id entry's size is what the kernel adds to st_blocks: as mksquashfs counts it, the
        # listxattr-style names (full name and NUL) plus the values, not the bytes on disk.
        size = sum(len(name) + 1 + len(value) for name, value in pairs)
        for name, value in pairs:
            prefix = next(p for p in fmt.XATTR_PREFIXES if name.startswith(p))
            suffix = name[len(prefix) :]
            record = (
                fmt.XATTR_KEY.pack(fmt.XATTR_PREFIXES[prefix], len(suffix))
                + suffix
                + fmt.U32.pack(len(value))
                + value
            )
            self._kv.write(record)
        found = self._ids[pairs] = len(self._entries)
        self._entries.append(fmt.XATTR_ID_ENTRY.pack(ref, len(pairs), size))
        return found

    def __len__(self) -> int:
        return len(self._entries)

    def write(self, position: int) -> tuple[bytes, int]:
        """(bytes to write at ``position``, absolute position of the xattr table header)."""
        kv = self._kv.finish()
        ids, index_pos = lookup_table(b"".join(self._entries), position + len(kv), self._codec)
        blocks = ids[: index_pos - position - len(kv)]
        index = ids[len(blocks) :]
        header = fmt.XATTR_TABLE_HEADER.pack(position, len(self._entries), 0)
        return kv + blocks + header + index, index_pos
