"""``cnd image info``: superblock, compression settings and what the tree holds."""

from __future__ import annotations

import datetime
import os
import struct

from condainer.errors import ImageError
from condainer.fs.reader import INVALID_TABLE, DamagedImage, SquashfsReader, walk

_FLAGS = {
    0x0001: "uncompressed inodes",
    0x0002: "uncompressed data",
    0x0008: "uncompressed fragments",
    0x0010: "no fragments",
    0x0020: "always fragments",
    0x0040: "deduplicated",
    0x0080: "exportable",
    0x0100: "uncompressed xattrs",
    0x0200: "no xattrs",
    0x0400: "compressor options",
    0x0800: "uncompressed ids",
}


def _compressor_options(reader: SquashfsReader) -> dict:
    """The compressor options block after the superblock (format.adoc "Compression Options")."""
    if not reader.sb.flags & 0x0400:
        return {}
    block, _ = reader.metablock(96)
    name = reader.sb.compression
    try:
        if name == "gzip":
            level, window, strategies = struct.unpack_from("<IHH", block)
            return {"level": level, "window_size": window, "strategies": strategies}
        if name == "zstd":
            (level,) = struct.unpack_from("<I", block)
            return {"level": level}
        if name == "xz":
            dict_size, filters = struct.unpack_from("<II", block)
            return {"dictionary_size": dict_size, "filters": filters}
        if name == "lz4":
            version, flags = struct.unpack_from("<II", block)
            return {"version": version, "flags": flags}
        if name == "lzo":
            algorithm, level = struct.unpack_from("<II", block)
            return {"algorithm": algorithm, "level": level}
    except struct.error:
        raise DamagedImage("compressor options block too short") from None
    return {}


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
                elif node.type in (4, 5):
                    counts["devices"] += 1
                elif node.type == 6:
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
        "flags": [name for bit, name in _FLAGS.items() if sb.flags & bit],
        "exportable": sb.export_table_start != INVALID_TABLE,
        "xattrs": sb.xattr_id_table_start != INVALID_TABLE,
        "mkfs_time": sb.mkfs_time,
        "mkfs_time_utc": datetime.datetime.fromtimestamp(sb.mkfs_time, datetime.timezone.utc).isoformat(),
        **counts,
        "file_bytes": file_bytes,
        "ratio": round(sb.bytes_used / file_bytes, 4) if file_bytes else None,
    }
