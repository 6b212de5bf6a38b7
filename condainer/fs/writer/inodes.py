"""Inode records ("Inode Table" in doc/format.adoc): basic where it suffices, extended where needed.

Extended variants are chosen as mksquashfs chooses them: files for nlink > 1, size or start >= 4 GiB,
sparse blocks or xattrs; directories for xattrs, a directory index, more than 256 entries or a
listing too long for a u16; everything else only for xattrs.
"""

from __future__ import annotations

import os
import stat
import struct

from condainer.fs import format as fmt
from condainer.fs.writer.directory import Listing

# A basic file inode is the header and the file body back to back: one pack instead of two plus a
# concatenation, for the inode most trees have most of. Both layouts are little-endian without padding.
_FILE_RECORD = struct.Struct(fmt.INODE_HEADER.format + fmt.FILE_INODE.format.lstrip("<"))


def basic_type(mode: int) -> int:
    return fmt.TYPE_OF_MODE[stat.S_IFMT(mode)]


def header(itype: int, mode: int, uid_index: int, gid_index: int, mtime: int, number: int) -> bytes:
    return fmt.INODE_HEADER.pack(itype, mode & 0o7777, uid_index, gid_index, mtime, number)


def directory(
    common: tuple, listing: Listing, nlink: int, parent: int, xattr: int, entry_count: int
) -> tuple[int, bytes]:
    """(type, record) for a directory; ``common`` is header() arguments after the type."""
    size = listing.size + 3
    if xattr == fmt.NO_XATTR and not listing.index and entry_count <= fmt.DIR_MAX_RUN and size <= 0xFFFF:
        body = fmt.DIR_INODE.pack(listing.start_block, nlink, size, listing.start_offset, parent)
        return fmt.DIR, header(fmt.DIR, *common) + body
    body = fmt.EXT_DIR_INODE.pack(
        nlink, size, listing.start_block, parent, len(listing.index), listing.start_offset, xattr
    )
    return fmt.EXT_DIR, header(fmt.EXT_DIR, *common) + body + b"".join(listing.index)


def regular(
    common: tuple,
    size: int,
    start: int,
    blocks: bytes,
    fragment: int,
    offset: int,
    sparse: int,
    nlink: int,
    xattr: int,
    holey: bool = True,
) -> tuple[int, bytes]:
    """(type, record) for a regular file: where its data went (data.py), ``blocks`` being the packed
    size words of its full blocks, ``sparse`` the bytes of its all-zero blocks. ``holey``: the source
    file has holes (st_blocks < size).

    All-zero blocks are stored as holes either way, but as mksquashfs does, the inode counts them
    as sparse (which lowers st_blocks on a mount) only when the source file was sparse too.
    """
    # mksquashfs never records the whole size as sparse; keep its convention.
    sparse = min(sparse, size - 1) if sparse and holey else 0
    if nlink == 1 and xattr == fmt.NO_XATTR and not sparse and size < 1 << 32 and start < 1 << 32:
        mode, uid_index, gid_index, mtime, number = common
        record = _FILE_RECORD.pack(
            fmt.FILE, mode & 0o7777, uid_index, gid_index, mtime, number, start, fragment, offset, size
        )
        return fmt.FILE, record + blocks if blocks else record
    body = fmt.EXT_FILE_INODE.pack(start, size, sparse, nlink, fragment, offset, xattr)
    return fmt.EXT_FILE, header(fmt.EXT_FILE, *common) + body + blocks


def special(
    itype: int, common: tuple, nlink: int, xattr: int, target: bytes | None, rdev: int
) -> tuple[int, bytes]:
    """Symlinks, devices, fifos and sockets."""
    ext = xattr != fmt.NO_XATTR
    t = itype + fmt.EXTENDED if ext else itype
    if itype == fmt.SYMLINK:
        body = fmt.SYMLINK_INODE.pack(nlink, len(target)) + target
    elif itype in (fmt.BLKDEV, fmt.CHRDEV):
        body = fmt.DEV_INODE.pack(nlink, fmt.encode_device(os.major(rdev), os.minor(rdev)))
    else:
        body = fmt.IPC_INODE.pack(nlink)
    if ext:
        body += fmt.U32.pack(xattr)
    return t, header(t, *common) + body
