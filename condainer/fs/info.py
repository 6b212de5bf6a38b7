"""``cnd image info``: superblock, compression settings and what the tree holds."""

from __future__ import annotations

import datetime
import os
import struct

from condainer.errors import ImageError
from condainer.fs import format as fmt
from condainer.fs.compression import REGISTRY
from condainer.fs.reader import DamagedImage, SquashfsReader, walk


def _compressor_options(reader: SquashfsReader) -> dict:
    """The compressor options block after the superblock (format.adoc "Compression Options")."""
    if not reader.sb.flags & fmt.FLAG_COMPRESSOR_OPTIONS:
        return {}
    block, _ = reader.metablock(fmt.SUPERBLOCK_SIZE)
    try:
        return REGISTRY[reader.sb.compression].describe_options(block)
    except struct.error:
        raise DamagedImage("compressor options block too short") from None


def image_info(image: os.PathLike) -> dict:
    """Superblock facts and tree counts of IMAGE as a JSON-ready dict; ImageError if unreadable."""
    path = os.fspath(image)
    try:
        with SquashfsReader(path) as reader:
            sb = reader.sb
            counts = {
                "files": 0,
                "directories": 1,
                "symlinks": 0,
                "devices": 0,
                "fifos": 0,
                "sockets": 0,
                "hard_links": 0,
            }
            seen = {reader.root.ref}
            file_bytes = 0
            for _, node in walk(reader):
                if node.ref in seen:
                    counts["hard_links"] += 1
                    continue
                seen.add(node.ref)
                if node.is_reg:
                    counts["files"] += 1
                    file_bytes += node.size
                elif node.is_dir:
                    counts["directories"] += 1
                elif node.is_symlink:
                    counts["symlinks"] += 1
                elif node.type in (fmt.BLKDEV, fmt.CHRDEV):
                    counts["devices"] += 1
                elif node.type == fmt.FIFO:
                    counts["fifos"] += 1
                else:
                    counts["sockets"] += 1
            options = _compressor_options(reader)
    except DamagedImage as e:
        raise ImageError(e.message if e.message.startswith(path) else f"{path}: {e.message}") from None
    return {
        "image": path,
        "image_bytes": os.path.getsize(path),
        "bytes_used": sb.bytes_used,
        "version": "4.0",
        "compression": sb.compression,
        "compression_options": options,
        "block_size": sb.block_size,
        "inodes": sb.inodes,
        "fragments": sb.fragments,
        "ids": sb.id_count,
        "flags": [name for bit, name in fmt.FLAG_NAMES.items() if sb.flags & bit],
        "exportable": sb.export_table_start != fmt.NO_TABLE,
        "xattrs": sb.xattr_id_table_start != fmt.NO_TABLE,
        "mkfs_time": sb.mkfs_time,
        "mkfs_time_utc": datetime.datetime.fromtimestamp(sb.mkfs_time, datetime.timezone.utc).isoformat(),
        **counts,
        "file_bytes": file_bytes,
        "ratio": round(sb.bytes_used / file_bytes, 4) if file_bytes else None,
    }
