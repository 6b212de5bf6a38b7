"""File data ("Data and Fragment Blocks" in doc/format.adoc): ranged reads of regular files.

``read(offset, size)`` decompresses only the blocks it touches, found through a per-file block
index (prefix sums of the block list that follows a file inode, kept on the inode); a file's tail
comes from its fragment block.  Decompressed blocks live in a bounded cache shared by all files.
"""

from __future__ import annotations

import itertools

from condainer.fs import format as fmt
from condainer.fs.reader.cache import LRUCache
from condainer.fs.reader.damaged import DamagedImage
from condainer.fs.reader.inodes import Inode
from condainer.fs.reader.metadata import METADATA_SIZE
from condainer.fs.reader.tables import LookupTables


class FileData(LookupTables):
    """Data blocks, fragments and the block index of each file."""

    _blocks: LRUCache

    def data_block(self, pos: int, size_word: int, expect: int | None, what: str) -> bytes:
        """The decompressed data block at ``pos`` whose size word is ``size_word``; it must hold
        exactly ``expect`` bytes (less than a block only at the end of a file or fragment)."""
        key = (pos, size_word)
        data = self._blocks.get(key)
        if data is not None:
            return data
        csize = size_word & fmt.DATA_SIZE_MASK
        if csize > self.sb.block_size:
            raise DamagedImage(f"{what}: stored size {csize} exceeds the block size")
        raw = self._pread(pos, csize, what)
        if size_word & fmt.DATA_UNCOMPRESSED:
            data = raw
        else:
            data = self._inflate(raw, self.sb.block_size, what)
        if expect is not None and len(data) < expect:
            raise DamagedImage(f"{what}: holds {len(data)} bytes, expected {expect}")
        self._blocks.put(key, data, len(data) + 100)
        return data

    def _block_index(self, node: Inode) -> tuple[list[int], list[int]]:
        """(size words, start positions) of the file's full blocks; cached on the inode."""
        idx = node._index
        if idx is not None:
            return idx
        bs = self.sb.block_size
        if node.fragment == fmt.NO_FRAGMENT:
            count = -(-node.size // bs)
        else:
            count = node.size // bs
        what = f"inode {node.ino}"
        if count * (bs // 2) > self.sb_end * 1024 + (1 << 40):
            raise DamagedImage(f"{what}: file size {node.size} is implausible")
        if count:
            # Each metadata block takes at least 3 bytes on disk and holds at most 8 KiB.
            table = self.sb.directory_table_start - self.sb.inode_table_start
            if count * 4 > (table // 3 + 1) * METADATA_SIZE:
                raise DamagedImage(f"{what}: block list larger than the inode table can hold")
            raw, _, _ = self._meta_read(*node.list_ref, 4 * count, f"{what} block list")
            words = [w for (w,) in fmt.U32.iter_unpack(raw)]
        else:
            words = []
        starts = list(itertools.accumulate((w & fmt.DATA_SIZE_MASK for w in words), initial=node.blocks_start))
        if starts[-1] > self.sb_end:
            raise DamagedImage(f"{what}: data blocks run past the end of the image")
        idx = (words, starts)
        node._index = idx
        return idx

    def read(self, node: Inode, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of a regular file from ``offset``, touching only the blocks needed."""
        if not node.is_reg:
            raise IsADirectoryError(node.ino) if node.is_dir else OSError("not a regular file")
        end = min(node.size, offset + size)
        if offset >= end:
            return b""
        words, starts = self._block_index(node)
        bs = self.sb.block_size
        nblocks = len(words)
        first = offset // bs
        last = (end - 1) // bs
        parts = []
        for i in range(first, last + 1):
            lo = offset - i * bs if i == first else 0
            hi = end - i * bs if i == last else bs
            if i < nblocks:
                word = words[i]
                expect = min(bs, node.size - i * bs)
                if word == 0:  # sparse block
                    parts.append(bytes(hi - lo))
                    continue
                data = self.data_block(starts[i], word, expect, f"inode {node.ino} data block {i}")
            else:
                data = self._tail(node)
            parts.append(data[lo:hi] if (lo or hi != len(data)) else data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _tail(self, node: Inode) -> bytes:
        bs = self.sb.block_size
        tail = node.size % bs
        frag = node._frag
        if frag is None:
            frag = node._frag = self.fragment(node.fragment)
        start, word = frag
        what = f"inode {node.ino} fragment {node.fragment}"
        block = self.data_block(start, word, None, what)
        if node.frag_offset + tail > len(block):
            raise DamagedImage(f"{what}: tail {node.frag_offset}+{tail} beyond the fragment block")
        return block[node.frag_offset : node.frag_offset + tail]
