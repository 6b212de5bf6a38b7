"""Inodes ("Inode Table" in doc/format.adoc): parsed lazily, when a reference is first followed.

An :class:`Inode` holds what stat() reports and what reading its data or listing needs; basic and
extended variants become the same object.
"""

from __future__ import annotations

import os

from condainer.fs import format as fmt
from condainer.fs.reader.cache import LRUCache
from condainer.fs.reader.damaged import DamagedImage
from condainer.fs.reader.metadata import METADATA_SIZE, MetadataReader

_IFMT = fmt.MODE_OF_TYPE  # basic inode type -> st_mode file type bits


class Inode:
    """One inode, as stat() should see it, plus what reading its data or listing needs."""

    __slots__ = (
        "ref",
        "ino",
        "type",
        "mode",
        "uid",
        "gid",
        "mtime",
        "nlink",
        "size",
        "rdev",
        "xattr",
        "blocks_start",
        "fragment",
        "frag_offset",
        "sparse",
        "list_ref",
        "dir_block",
        "dir_offset",
        "parent",
        "target",
        "_index",
        "_frag",
        "blocks",
    )

    def __init__(self) -> None:
        self.rdev = 0
        self.xattr = fmt.NO_XATTR
        self.sparse = 0
        self.target = b""
        self._index = None
        self._frag = None
        self.blocks = 0

    @property
    def is_dir(self) -> bool:
        return self.type == 1

    @property
    def is_reg(self) -> bool:
        return self.type == 2

    @property
    def is_symlink(self) -> bool:
        return self.type == 3



class InodeTable(MetadataReader):
    """Inodes by reference, parsed once and kept in a bounded cache."""

    _inodes: LRUCache
    _ids: list[int]  # the id table (tables.py)
    _xattr_ids: int  # entries of the xattr id table (xattrs.py)
    _xattr_id_index: list[int]

    def inode(self, ref: int) -> Inode:
        """The inode at reference ``ref`` ((metadata block offset << 16) | offset in the block)."""
        node = self._inodes.get(ref)
        if node is None:
            node = self._parse_inode(ref)
            self._inodes.put(ref, node)
        return node

    def _parse_inode(self, ref: int) -> Inode:
        block, offset = ref >> 16, ref & 0xFFFF
        what = f"inode {block}:{offset}"
        if offset >= METADATA_SIZE or block > 0xFFFFFFFF:
            raise DamagedImage(f"{what}: bad inode reference")
        pos = self.sb.inode_table_start + block
        if pos >= self.sb.directory_table_start:
            raise DamagedImage(f"{what}: outside the inode table")
        raw, pos, offset = self._meta_read(pos, offset, 16, what)
        itype, mode, uid_i, gid_i, mtime, ino = fmt.INODE_HEADER.unpack(raw)
        if not 1 <= itype <= 14:
            raise DamagedImage(f"{what}: unknown inode type {itype}")
        if uid_i >= len(self._ids) or gid_i >= len(self._ids):
            raise DamagedImage(f"{what}: uid/gid index beyond the id table")
        if not 1 <= ino <= self.sb.inodes:
            raise DamagedImage(f"{what}: inode number {ino} outside 1..{self.sb.inodes}")
        n = Inode()
        n.ref = ref
        n.ino = ino
        basic = itype if itype <= 7 else itype - 7
        n.type = basic
        n.mode = _IFMT[basic] | (mode & 0o7777)
        n.uid = self._ids[uid_i]
        n.gid = self._ids[gid_i]
        n.mtime = mtime
        self._parse_body(n, itype, pos, offset, what)
        self._count_blocks(n, itype, what)
        return n

    def _parse_body(self, n: Inode, itype: int, pos: int, offset: int, what: str) -> None:
        """The fields after the common header, which differ by inode type (basic 1-7, extended 8-14)."""
        basic = n.type
        if itype == 1:
            raw, pos, offset = self._meta_read(pos, offset, fmt.DIR_INODE.size, what)
            n.dir_block, n.nlink, n.size, n.dir_offset, n.parent = fmt.DIR_INODE.unpack(raw)
        elif itype == 8:
            raw, pos, offset = self._meta_read(pos, offset, fmt.EXT_DIR_INODE.size, what)
            (n.nlink, n.size, n.dir_block, n.parent, _idx_count, n.dir_offset, n.xattr) = fmt.EXT_DIR_INODE.unpack(raw)
        elif itype == 2 or itype == 9:
            if itype == 2:
                raw, pos, offset = self._meta_read(pos, offset, fmt.FILE_INODE.size, what)
                n.blocks_start, n.fragment, n.frag_offset, n.size = fmt.FILE_INODE.unpack(raw)
                n.nlink = 1
            else:
                raw, pos, offset = self._meta_read(pos, offset, fmt.EXT_FILE_INODE.size, what)
                (n.blocks_start, n.size, n.sparse, n.nlink, n.fragment, n.frag_offset, n.xattr) = (
                    fmt.EXT_FILE_INODE.unpack(raw)
                )
            n.list_ref = (pos, offset)  # the block list follows the inode
        elif itype == 3 or itype == 10:
            raw, pos, offset = self._meta_read(pos, offset, fmt.SYMLINK_INODE.size, what)
            n.nlink, size = fmt.SYMLINK_INODE.unpack(raw)
            if size > fmt.MAX_SYMLINK:
                raise DamagedImage(f"{what}: symlink target of {size} bytes")
            n.target, pos, offset = self._meta_read(pos, offset, size, what)
            n.size = size
            if itype == 10:
                raw, pos, offset = self._meta_read(pos, offset, 4, what)
                (n.xattr,) = fmt.U32.unpack(raw)
        elif basic in (4, 5):
            st = fmt.DEV_INODE if itype <= 7 else fmt.EXT_DEV_INODE
            raw, pos, offset = self._meta_read(pos, offset, st.size, what)
            vals = st.unpack(raw)
            n.nlink, dev = vals[0], vals[1]
            if itype > 7:
                n.xattr = vals[2]
            n.rdev = os.makedev(*fmt.decode_device(dev))
            n.size = 0
        else:
            st = fmt.IPC_INODE if itype <= 7 else fmt.EXT_IPC_INODE
            raw, pos, offset = self._meta_read(pos, offset, st.size, what)
            vals = st.unpack(raw)
            n.nlink = vals[0]
            if itype > 7:
                n.xattr = vals[1]
            n.size = 0

    def _count_blocks(self, n: Inode, itype: int, what: str) -> None:
        """st_blocks as the kernel's fs/squashfs/inode.c counts them: 512-byte units of the data
        (a basic file rounds up from size - 1, an extended one leaves out its sparse bytes), plus
        the units its xattrs take."""
        if itype == 2:
            n.blocks = ((n.size - 1) >> 9) + 1 if n.size else 0
        elif itype == 9:
            n.blocks = max(0, (n.size - n.sparse + 511) >> 9)
        if n.xattr != fmt.NO_XATTR:
            if n.xattr >= self._xattr_ids:
                raise DamagedImage(f"{what}: xattr index {n.xattr} beyond the xattr table")
            _, _, xsize = self._table_entry(self._xattr_id_index, n.xattr, fmt.XATTR_ID_ENTRY, "xattr id table")
            n.blocks += ((xsize - 1) >> 9) + 1

    def readlink(self, node: Inode) -> bytes:
        if not node.is_symlink:
            raise OSError("not a symlink")
        return node.target
