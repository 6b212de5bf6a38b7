"""The superblock ("The Superblock" in doc/format.adoc): parsed and checked before anything else.

PySquashfsImage's ``Superblock`` structure unpacks the 96 bytes; every field used to seek or size
anything later is checked here, so the rest of the reader trusts them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PySquashfsImage.structure import Superblock

from condainer.fs import format as fmt
from condainer.fs.compression import BY_ID
from condainer.fs.reader.damaged import DamagedImage


@dataclass(frozen=True)
class SuperInfo:
    """The superblock fields a reader and ``cnd image info`` need."""

    inodes: int
    mkfs_time: int
    block_size: int
    block_log: int
    fragments: int
    compression: str
    compression_id: int
    flags: int
    id_count: int
    root_ref: int
    bytes_used: int
    id_table_start: int
    xattr_id_table_start: int
    inode_table_start: int
    directory_table_start: int
    fragment_table_start: int
    export_table_start: int


def read_superblock(fd: int, path: str, file_size: int) -> SuperInfo:
    """The checked superblock of the image open at FD (PATH names it in messages)."""
    if file_size < fmt.SUPERBLOCK_SIZE:
        raise DamagedImage(f"{path}: not a squashfs image (only {file_size} bytes)")
    sb = Superblock.from_bytes(os.pread(fd, fmt.SUPERBLOCK_SIZE, 0))
    if sb.s_magic != fmt.MAGIC:
        raise DamagedImage(f"{path}: not a squashfs image (bad magic)")
    if (sb.s_major, sb.s_minor) != (fmt.VERSION_MAJOR, fmt.VERSION_MINOR):
        raise DamagedImage(f"{path}: squashfs version {sb.s_major}.{sb.s_minor}, only 4.0 is supported")
    if sb.compression not in BY_ID:
        raise DamagedImage(f"{path}: unsupported compressor id {sb.compression}")
    if not (12 <= sb.block_log <= 20) or sb.block_size != 1 << sb.block_log:
        raise DamagedImage(f"{path}: bad block size {sb.block_size} (log {sb.block_log})")
    if sb.bytes_used > file_size:
        raise DamagedImage(
            f"{path}: image truncated: superblock says {sb.bytes_used} bytes, file has {file_size}"
        )
    for name in ("inode_table_start", "directory_table_start", "id_table_start"):
        if getattr(sb, name) >= sb.bytes_used:
            raise DamagedImage(f"{path}: superblock {name} beyond the end of the image")
    if sb.inode_table_start > sb.directory_table_start:
        raise DamagedImage(f"{path}: superblock inode table starts after the directory table")
    if sb.no_ids == 0:
        raise DamagedImage(f"{path}: superblock has no uid/gid table")
    return SuperInfo(
        inodes=sb.inodes,
        mkfs_time=sb.mkfs_time,
        block_size=sb.block_size,
        block_log=sb.block_log,
        fragments=sb.fragments,
        compression=BY_ID[sb.compression].name,
        compression_id=sb.compression,
        flags=sb.flags,
        id_count=sb.no_ids,
        root_ref=sb.root_inode,
        bytes_used=sb.bytes_used,
        id_table_start=sb.id_table_start,
        xattr_id_table_start=sb.xattr_id_table_start,
        inode_table_start=sb.inode_table_start,
        directory_table_start=sb.directory_table_start,
        fragment_table_start=sb.fragment_table_start,
        export_table_start=sb.lookup_table_start,
    )
