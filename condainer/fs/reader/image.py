"""SquashfsReader: one image, opened and checked, with every table's reader combined.

Each part reads one section of the format (superblock.py, metadata.py, tables.py, inodes.py,
directory.py, xattrs.py, data.py); this class opens the file, reads what must be known up front
(superblock, id table, fragment and xattr indexes, root inode) and answers stat and statfs.
"""

from __future__ import annotations

import os

from condainer.errors import ImageError
from condainer.fs import format as fmt
from condainer.fs.reader.cache import LRUCache
from condainer.fs.reader.damaged import DamagedImage
from condainer.fs.reader.data import FileData
from condainer.fs.reader.directory import DirectoryTable
from condainer.fs.reader.inodes import Inode
from condainer.fs.reader.superblock import read_superblock
from condainer.fs.reader.xattrs import XattrTable


class SquashfsReader(DirectoryTable, XattrTable, FileData):
    """A read-only view of one image: lookup, listdir, getattr, read, readlink, xattrs, statfs.

    Objects handed out (:class:`Inode`, :class:`DirEntry`) are shared and must not be modified.
    Methods raise :class:`DamagedImage` on anything the image does not allow.
    """

    def __init__(
        self,
        path: os.PathLike | str,
        *,
        # The kernel keeps file pages and attributes; these caches only spare re-decompressing a
        # block that several reads share and the metadata of a working set.
        cache_bytes: int = 16 << 20,
        metadata_cache_bytes: int = 32 << 20,
        inode_cache_items: int = 1 << 16,
    ) -> None:
        self.path = os.fspath(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise ImageError(f"{self.path}: cannot open image: {e.strerror}") from None
        try:
            self.file_size = os.fstat(self._fd).st_size
            self.sb = read_superblock(self._fd, self.path, self.file_size)
            self.sb_end = self.sb.bytes_used
            self._decompressors = [self._first_decompressor()]
            self._blocks = LRUCache(cache_bytes)
            self._meta = LRUCache(metadata_cache_bytes)
            self._inodes = LRUCache(inode_cache_items)
            self._dirs = LRUCache(inode_cache_items)
            self._paths = LRUCache(inode_cache_items)
            self._ids = self._read_id_table()
            self._fragment_index = self._read_fragment_index()
            self._xattr_start, self._xattr_id_index, self._xattr_ids = self._read_xattr_header()
            self.root = self.inode(self.sb.root_ref)
            if not self.root.is_dir:
                raise DamagedImage("root inode is not a directory")
        except BaseException:
            os.close(self._fd)
            raise

    def __enter__(self) -> SquashfsReader:
        return self

    def getattr(self, node: Inode) -> dict[str, int]:
        """stat() of an inode as the kernel's squashfs reports it (one mtime serves all times)."""
        return {
            "st_ino": node.ino,
            "st_mode": node.mode,
            "st_nlink": node.nlink,
            "st_uid": node.uid,
            "st_gid": node.gid,
            "st_rdev": node.rdev,
            "st_size": node.size,
            "st_blocks": node.blocks,
            "st_atime": node.mtime,
            "st_mtime": node.mtime,
            "st_ctime": node.mtime,
        }

    def statfs(self) -> dict[str, int]:
        """What statvfs reports, as the kernel's squashfs does."""
        sb = self.sb
        return {
            "f_bsize": sb.block_size,
            "f_frsize": sb.block_size,
            "f_blocks": ((sb.bytes_used - 1) >> sb.block_log) + 1,
            "f_bfree": 0,
            "f_bavail": 0,
            "f_files": sb.inodes,
            "f_ffree": 0,
            "f_favail": 0,
            "f_namemax": fmt.MAX_NAME,
        }

    def cache_stats(self) -> dict[str, int]:
        """Hits and misses of the block and metadata caches (tests, CONDAINER_FUSE_STATS)."""
        return {
            "block_hits": self._blocks.hits,
            "block_misses": self._blocks.misses,
            "block_bytes": self._blocks.weight,
            "meta_hits": self._meta.hits,
            "meta_misses": self._meta.misses,
        }
