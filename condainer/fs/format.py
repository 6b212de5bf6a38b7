"""On-disk constants and struct layouts of squashfs 4.0 (squashfs-tools-ng doc/format.adoc).

Everything is little-endian. Each layout is named after its section in the spec; the writer packs
them, the reader unpacks them, and neither spells a format string itself, so a layout lives in
exactly one place. Compressor ids are here; what each compressor does is in compression.py.
"""

from __future__ import annotations

import stat
import struct

MAGIC = 0x73717368  # "hsqs"
VERSION_MAJOR = 4
VERSION_MINOR = 0
SUPERBLOCK_SIZE = 96
DEVICE_BLOCK = 4096  # images are padded to this; bytes_used excludes the padding
METADATA_SIZE = 8192  # uncompressed size of one metadata block
METADATA_UNCOMPRESSED = 0x8000  # bit in a metadata block's u16 header: stored raw
METADATA_SIZE_MASK = 0x7FFF  # the on-disk size bits of that header
DATA_UNCOMPRESSED = 1 << 24  # bit in a data/fragment block size: stored raw
DATA_SIZE_MASK = 0xFFFFFF  # the on-disk size bits of a data/fragment block size
NO_FRAGMENT = 0xFFFFFFFF
NO_XATTR = 0xFFFFFFFF
NO_TABLE = 0xFFFFFFFFFFFFFFFF
MIN_BLOCK_SIZE = 4096
MAX_BLOCK_SIZE = 1 << 20
MAX_NAME = 256  # the kernel refuses longer names
DIR_MAX_RUN = 256  # entries per directory header; the kernel rejects more
MAX_IDS = 65535  # the superblock's id count is a u16 (inodes index with a u16 too)

# Compressor ids (superblock "compression id").
COMP_GZIP = 1
COMP_LZMA = 2
COMP_LZO = 3
COMP_XZ = 4
COMP_LZ4 = 5
COMP_ZSTD = 6

# Superblock flags. Only COMPRESSOR_OPTIONS is checked by the kernel; the rest inform tools.
# (FLAG_NAMES below names each for ``cnd image info``.)
FLAG_UNCOMPRESSED_INODES = 0x0001
FLAG_UNCOMPRESSED_DATA = 0x0002
FLAG_UNCOMPRESSED_FRAGMENTS = 0x0008
FLAG_NO_FRAGMENTS = 0x0010
FLAG_ALWAYS_FRAGMENTS = 0x0020
FLAG_DUPLICATES = 0x0040
FLAG_EXPORTABLE = 0x0080
FLAG_UNCOMPRESSED_XATTRS = 0x0100
FLAG_NO_XATTRS = 0x0200
FLAG_COMPRESSOR_OPTIONS = 0x0400
FLAG_UNCOMPRESSED_IDS = 0x0800
FLAG_NAMES = {
    FLAG_UNCOMPRESSED_INODES: "uncompressed inodes",
    FLAG_UNCOMPRESSED_DATA: "uncompressed data",
    FLAG_UNCOMPRESSED_FRAGMENTS: "uncompressed fragments",
    FLAG_NO_FRAGMENTS: "no fragments",
    FLAG_ALWAYS_FRAGMENTS: "always fragments",
    FLAG_DUPLICATES: "deduplicated",
    FLAG_EXPORTABLE: "exportable",
    FLAG_UNCOMPRESSED_XATTRS: "uncompressed xattrs",
    FLAG_NO_XATTRS: "no xattrs",
    FLAG_COMPRESSOR_OPTIONS: "compressor options",
    FLAG_UNCOMPRESSED_IDS: "uncompressed ids",
}

# Inode types ("Common Inode Header"). Extended = basic + 7.
DIR, FILE, SYMLINK, BLKDEV, CHRDEV, FIFO, SOCKET = range(1, 8)
EXT_DIR, EXT_FILE, EXT_SYMLINK, EXT_BLKDEV, EXT_CHRDEV, EXT_FIFO, EXT_SOCKET = range(8, 15)
EXTENDED = 7
# Basic inode type -> the file type bits of st_mode, and back.
MODE_OF_TYPE = {
    DIR: stat.S_IFDIR,
    FILE: stat.S_IFREG,
    SYMLINK: stat.S_IFLNK,
    BLKDEV: stat.S_IFBLK,
    CHRDEV: stat.S_IFCHR,
    FIFO: stat.S_IFIFO,
    SOCKET: stat.S_IFSOCK,
}
TYPE_OF_MODE = {bits: itype for itype, bits in MODE_OF_TYPE.items()}
MAX_SYMLINK = 4096  # longest symlink target the reader accepts (PATH_MAX)

# Xattr key prefixes ("Extended Attribute Table"); other namespaces cannot be stored.
XATTR_PREFIXES = {b"user.": 0, b"trusted.": 1, b"security.": 2}
XATTR_PREFIX_OF_ID = {n: prefix for prefix, n in XATTR_PREFIXES.items()}
XATTR_VALUE_OUT_OF_LINE = 0x0100  # bit in a key's type: the value is a u64 reference to it

# --- Superblock ---------------------------------------------------------------------------------
SUPERBLOCK = struct.Struct("<IIIIIHHHHHHQQQQQQQQ")
assert SUPERBLOCK.size == SUPERBLOCK_SIZE

# --- Inodes ("Inode Table") -------------------------------------------------------------------
# type, permissions, uid index, gid index, mtime, inode number
INODE_HEADER = struct.Struct("<HHHHII")
# block index, link count, file size (+3), block offset, parent inode
DIR_INODE = struct.Struct("<IIHHI")
# link count, file size (+3), block index, parent inode, index count, block offset, xattr index
EXT_DIR_INODE = struct.Struct("<IIIIHHI")
# blocks start, fragment index, offset in fragment, file size (then u32 block sizes)
FILE_INODE = struct.Struct("<IIII")
# blocks start, file size, sparse bytes, link count, fragment index, offset in fragment, xattr index
EXT_FILE_INODE = struct.Struct("<QQQIIII")
# link count, target size (then target bytes; extended adds u32 xattr index)
SYMLINK_INODE = struct.Struct("<II")
# link count, device number (extended adds u32 xattr index)
DEV_INODE = struct.Struct("<II")
EXT_DEV_INODE = struct.Struct("<III")
# link count (extended adds u32 xattr index)
IPC_INODE = struct.Struct("<I")
EXT_IPC_INODE = struct.Struct("<II")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
U16 = struct.Struct("<H")

# --- Directory table ------------------------------------------------------------------------
# count - 1, inode metadata block (relative to inode table), base inode number
DIR_HEADER = struct.Struct("<IIi")
# offset in inode block, inode number delta, basic type, name length - 1 (then name)
DIR_ENTRY = struct.Struct("<HhHH")
# offset of the header in the listing, dir metadata block, name length - 1 (then name)
DIR_INDEX = struct.Struct("<III")

# --- Lookup tables --------------------------------------------------------------------------
FRAGMENT_ENTRY = struct.Struct("<QII")  # start, size | DATA_UNCOMPRESSED, unused 0
XATTR_ID_ENTRY = struct.Struct("<QII")  # key/value ref, pair count, size of the pairs
XATTR_TABLE_HEADER = struct.Struct("<QII")  # key/value start, id count, unused 0
XATTR_KEY = struct.Struct("<HH")  # prefix id, name length (then name)


def encode_device(major: int, minor: int) -> int:
    """The 32-bit device number squashfs stores (Linux's old_encode_dev-compatible layout)."""
    return ((major & 0xFFF) << 8) | (minor & 0xFF) | ((minor & 0xFFF00) << 12)


def decode_device(dev: int) -> tuple[int, int]:
    """(major, minor) of a stored device number: the inverse of encode_device."""
    return (dev >> 8) & 0xFFF, (dev & 0xFF) | ((dev >> 12) & 0xFFF00)


class Superblock:
    """The 96-byte superblock as the writer fills it in; offsets not written stay NO_TABLE.

    A plain class, not a dataclass: this module is imported on every cnd start (via compression.py)."""

    def __init__(self, **fields: int) -> None:
        self.inode_count = 0
        self.mkfs_time = 0
        self.block_size = 128 * 1024
        self.fragment_count = 0
        self.compressor = COMP_ZSTD
        self.flags = 0
        self.id_count = 0
        self.root_inode = 0
        self.bytes_used = 0
        self.id_table = NO_TABLE
        self.xattr_table = NO_TABLE
        self.inode_table = NO_TABLE
        self.directory_table = NO_TABLE
        self.fragment_table = NO_TABLE
        self.export_table = NO_TABLE
        for name, value in fields.items():
            if not hasattr(self, name):
                raise TypeError(f"Superblock has no field {name!r}")
            setattr(self, name, value)

    def pack(self) -> bytes:
        block_log = self.block_size.bit_length() - 1
        return SUPERBLOCK.pack(
            MAGIC,
            self.inode_count,
            self.mkfs_time,
            self.block_size,
            self.fragment_count,
            self.compressor,
            block_log,
            self.flags,
            self.id_count,
            VERSION_MAJOR,
            VERSION_MINOR,
            self.root_inode,
            self.bytes_used,
            self.id_table,
            self.xattr_table,
            self.inode_table,
            self.directory_table,
            self.fragment_table,
            self.export_table,
        )
