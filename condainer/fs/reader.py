"""Read a squashfs 4.0 image the way a mount needs it: lazily, by range, from many threads.

PySquashfsImage 0.9.0 builds the whole tree when it opens an image, reads file data only from block
0, shares one file position and one decompressor between callers.  This module keeps its superblock
structure and its constants and does the rest itself:

- nothing is walked at open: a directory's listing is parsed when it is first looked up, an inode
  when its reference is first followed (squashfs-tools-ng doc/format.adoc, "Directory Table");
- ``read(offset, size)`` decompresses only the data blocks it touches, found through a per-file
  block index (prefix sums of the block list that follows a file inode);
- all I/O is ``os.pread`` on one descriptor, so threads share no file position;
- a decompressor is used by one thread at a time (python-zstandard objects are not
  thread-safe): calls take one from a pool;
- decompressed data and metadata blocks live in bounded, locked LRU caches.

Every value read from the image is checked before it is used to seek, allocate or loop, so a damaged
image raises :class:`DamagedImage` naming what is wrong instead of crashing or hanging.
"""

from __future__ import annotations

import collections
import itertools
import os
import struct
import threading
from dataclasses import dataclass

from PySquashfsImage.structure import Superblock

from condainer.errors import ImageError
from condainer.fs import format as fmt
from condainer.fs.compression import BY_ID, CodecUnavailable

METADATA_SIZE = fmt.METADATA_SIZE
INVALID_FRAG = fmt.NO_FRAGMENT
INVALID_XATTR = fmt.NO_XATTR
INVALID_TABLE = fmt.NO_TABLE
_IFMT = fmt.MODE_OF_TYPE
_U16, _U32, _U64 = fmt.U16, fmt.U32, fmt.U64
_FRAGMENT = fmt.FRAGMENT_ENTRY
_XATTR_ID = fmt.XATTR_ID_ENTRY


class DamagedImage(ImageError):
    """The image is not a readable squashfs 4.0 image, or part of it is damaged."""


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
        self.xattr = INVALID_XATTR
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

    @property
    def st_blocks(self) -> int:
        return self.blocks


class DirEntry:
    """One name in a directory listing: what lookup and readdir hand out without reading the inode."""

    __slots__ = ("name", "ref", "type", "ino")

    def __init__(self, name: bytes, ref: int, type_: int, ino: int) -> None:
        self.name = name
        self.ref = ref
        self.type = type_
        self.ino = ino


class LRUCache:
    """A thread-safe LRU map bounded by a total weight (bytes for blocks, 1 per item otherwise)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.weight = 0
        self.hits = 0
        self.misses = 0
        self._data: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            try:
                value = self._data[key]
            except KeyError:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value[0]

    def put(self, key, value, weight: int = 1) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.weight -= old[1]
            self._data[key] = (value, weight)
            self.weight += weight
            while self.weight > self.capacity and len(self._data) > 1:
                _, (_, w) = self._data.popitem(last=False)
                self.weight -= w

    def __len__(self) -> int:
        return len(self._data)


# ---------------------------------------------------------------------------------------------------


class SquashfsReader:
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
            self.sb = self._read_superblock()
            self._decompressors = [self._first_decompressor()]
            self._blocks = LRUCache(cache_bytes)
            self._meta = LRUCache(metadata_cache_bytes)
            self._inodes = LRUCache(inode_cache_items)
            self._dirs = LRUCache(inode_cache_items)
            self._paths = LRUCache(inode_cache_items)
            self._ids = self._read_lookup_table(self.sb.id_table_start, self.sb.id_count, 4, "id table")
            self._ids = [v for (v,) in _U32.iter_unpack(self._ids)]
            self._fragment_index = self._read_index(
                self.sb.fragment_table_start, self.sb.fragments * 16, "fragment table"
            )
            self._xattr_start, self._xattr_id_index, self._xattr_ids = self._read_xattr_header()
            self.root = self.inode(self.sb.root_ref)
            if not self.root.is_dir:
                raise DamagedImage("root inode is not a directory")
        except BaseException:
            os.close(self._fd)
            raise

    def _first_decompressor(self):
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

    def __enter__(self) -> SquashfsReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- low level: bytes, blocks, tables -------------------------------------------------------

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

    def _read_superblock(self) -> SuperInfo:
        if self.file_size < 96:
            raise DamagedImage(f"{self.path}: not a squashfs image (only {self.file_size} bytes)")
        raw = os.pread(self._fd, 96, 0)
        sb = Superblock.from_bytes(raw)
        if sb.s_magic != fmt.MAGIC:
            raise DamagedImage(f"{self.path}: not a squashfs image (bad magic)")
        if (sb.s_major, sb.s_minor) != (4, 0):
            raise DamagedImage(
                f"{self.path}: squashfs version {sb.s_major}.{sb.s_minor}, only 4.0 is supported"
            )
        if sb.compression not in BY_ID:
            raise DamagedImage(f"{self.path}: unsupported compressor id {sb.compression}")
        if not (12 <= sb.block_log <= 20) or sb.block_size != 1 << sb.block_log:
            raise DamagedImage(f"{self.path}: bad block size {sb.block_size} (log {sb.block_log})")
        if sb.bytes_used > self.file_size:
            raise DamagedImage(
                f"{self.path}: image truncated: superblock says {sb.bytes_used} bytes, "
                f"file has {self.file_size}"
            )
        self.sb_end = sb.bytes_used
        for name in ("inode_table_start", "directory_table_start", "id_table_start"):
            if getattr(sb, name) >= sb.bytes_used:
                raise DamagedImage(f"{self.path}: superblock {name} beyond the end of the image")
        if sb.inode_table_start > sb.directory_table_start:
            raise DamagedImage(f"{self.path}: superblock inode table starts after the directory table")
        if sb.no_ids == 0:
            raise DamagedImage(f"{self.path}: superblock has no uid/gid table")
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

    def metablock(self, pos: int) -> tuple[bytes, int]:
        """The 8 KiB metadata block stored at absolute ``pos`` and the position of the next one."""
        hit = self._meta.get(pos)
        if hit is not None:
            return hit
        (header,) = _U16.unpack(self._pread(pos, 2, "metadata block header"))
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
        index = [v for (v,) in _U64.iter_unpack(raw)]
        for pos in index:
            if pos >= self.sb_end:
                raise DamagedImage(f"{what}: block position {pos} beyond the end of the image")
        return index

    def _read_lookup_table(self, start: int, count: int, entry_size: int, what: str) -> bytes:
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
        pos_in_table = n * entry.size
        block_no, offset = divmod(pos_in_table, METADATA_SIZE)
        if block_no >= len(index):
            raise DamagedImage(f"{what} entry {n} does not exist")
        block, _ = self.metablock(index[block_no])
        if offset + entry.size > len(block):
            raise DamagedImage(f"{what} entry {n}: its block is too short")
        return entry.unpack_from(block, offset)

    def _read_xattr_header(self) -> tuple[int, list[int], int]:
        start = self.sb.xattr_id_table_start
        if start == INVALID_TABLE:
            return 0, [], 0
        table_start, ids, _ = _XATTR_ID.unpack(self._pread(start, 16, "xattr id table header"))
        if table_start >= self.sb_end:
            raise DamagedImage("xattr table starts beyond the end of the image")
        index = self._read_index(start + 16, ids * 16, "xattr id table")
        return table_start, index, ids

    def export_refs(self):
        """(inode number, inode reference) from the export table, if the image has one."""
        start = self.sb.export_table_start
        if start == INVALID_TABLE:
            return
        index = self._read_index(start, self.sb.inodes * 8, "export table")
        for ino in range(1, self.sb.inodes + 1):
            (ref,) = self._table_entry(index, ino - 1, _U64, "export table")
            yield ino, ref

    def fragment(self, n: int) -> tuple[int, int]:
        if n >= self.sb.fragments:
            raise DamagedImage(f"fragment {n} does not exist ({self.sb.fragments} fragments)")
        start, size, _ = self._table_entry(self._fragment_index, n, _FRAGMENT, "fragment table")
        return start, size

    def data_block(self, pos: int, size_word: int, expect: int, what: str) -> bytes:
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

    # -- inodes ------------------------------------------------------------------------------------

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
                (n.xattr,) = _U32.unpack(raw)
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
        # st_blocks as the kernel's fs/squashfs/inode.c counts them: 512-byte units of the data
        # (a basic file rounds up from size - 1, an extended one leaves out its sparse bytes),
        # plus the units its xattrs take.
        if itype == 2:
            n.blocks = ((n.size - 1) >> 9) + 1 if n.size else 0
        elif itype == 9:
            n.blocks = max(0, (n.size - n.sparse + 511) >> 9)
        if n.xattr != INVALID_XATTR:
            if n.xattr >= self._xattr_ids:
                raise DamagedImage(f"{what}: xattr index {n.xattr} beyond the xattr table")
            _, _, xsize = self._table_entry(self._xattr_id_index, n.xattr, _XATTR_ID, "xattr id table")
            n.blocks += ((xsize - 1) >> 9) + 1
        return n

    # -- directories -------------------------------------------------------------------------------

    def listing(self, dirnode: Inode) -> tuple[list[DirEntry], dict[bytes, DirEntry]]:
        """All entries of a directory, in image (byte) order, and the same keyed by name."""
        if not dirnode.is_dir:
            raise NotADirectoryError(dirnode.ref)
        hit = self._dirs.get(dirnode.ref)
        if hit is not None:
            return hit
        what = f"directory inode {dirnode.ino}"
        entries: list[DirEntry] = []
        size = dirnode.size - 3
        if size < 0:
            raise DamagedImage(f"{what}: listing size {dirnode.size} below 3")
        pos = self.sb.directory_table_start + dirnode.dir_block
        offset = dirnode.dir_offset
        if pos >= self.sb_end:
            raise DamagedImage(f"{what}: listing outside the directory table")
        # Read the listing in one piece, then parse it in memory.
        table = self.sb_end - self.sb.directory_table_start
        if size > (table // 3 + 1) * METADATA_SIZE:
            raise DamagedImage(f"{what}: listing of {size} bytes exceeds the directory table")
        data, _, _ = self._meta_read(pos, offset, size, what) if size else (b"", 0, 0)
        i = 0
        prev = b""
        header_unpack, entry_unpack = fmt.DIR_HEADER.unpack_from, fmt.DIR_ENTRY.unpack_from
        while i < size:
            if i + 12 > size:
                raise DamagedImage(f"{what}: listing ends inside a header")
            count, start_block, base = header_unpack(data, i)
            i += 12
            if count >= fmt.DIR_MAX_RUN:
                raise DamagedImage(f"{what}: header with {count + 1} entries")
            for _ in range(count + 1):
                if i + 8 > size:
                    raise DamagedImage(f"{what}: listing overruns its size")
                eoff, delta, etype, nsize = entry_unpack(data, i)
                nsize += 1
                if nsize > fmt.MAX_NAME:
                    raise DamagedImage(f"{what}: entry name of {nsize} bytes")
                name = data[i + 8 : i + 8 + nsize]
                i += 8 + nsize
                if i > size:
                    raise DamagedImage(f"{what}: listing overruns its size")
                if not 1 <= etype <= 7 or eoff >= METADATA_SIZE:
                    raise DamagedImage(f"{what}: entry {name!r} has a bad type or reference")
                if name <= prev:
                    raise DamagedImage(f"{what}: entries not sorted or duplicated at {name!r}")
                if b"/" in name or b"\0" in name or name in (b".", b".."):
                    raise DamagedImage(f"{what}: invalid entry name {name!r}")
                prev = name
                entries.append(DirEntry(name, (start_block << 16) | eoff, etype, base + delta))
        by_name = {e.name: e for e in entries}
        result = (entries, by_name)
        self._dirs.put(dirnode.ref, result)
        return result

    def lookup(self, dirnode: Inode, name: bytes) -> Inode | None:
        """The inode called ``name`` in ``dirnode``, or None."""
        entry = self.listing(dirnode)[1].get(name)
        if entry is None:
            return None
        node = self.inode(entry.ref)
        if node.type != entry.type:
            raise DamagedImage(
                f"directory inode {dirnode.ino}: entry {name!r} says type "
                f"{entry.type}, its inode is type {node.type}"
            )
        return node

    def resolve(self, path: bytes | str) -> Inode | None:
        """The inode at an absolute ``path`` inside the image ('/' is the root), or None.

        Does not follow symlinks.  Directory results are remembered, so resolving many names in
        one directory parses the path to it once."""
        if isinstance(path, str):
            path = os.fsencode(path)
        path = path.rstrip(b"/")
        if not path:
            return self.root
        node = self._paths.get(path)
        if node is not None:
            return node
        parent_path, _, name = path.rpartition(b"/")
        parent = self.resolve(parent_path) if parent_path else self.root
        if parent is None or not parent.is_dir:
            return None
        node = self.lookup(parent, name)
        if node is not None and node.is_dir:
            self._paths.put(path, node)
        return node

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

    def listdir(self, dirnode: Inode) -> list[DirEntry]:
        return self.listing(dirnode)[0]

    # -- file data ---------------------------------------------------------------------------------

    def _block_index(self, node: Inode) -> tuple[list[int], list[int]]:
        """(size words, start positions) of the file's full blocks; cached on the inode."""
        idx = node._index
        if idx is not None:
            return idx
        bs = self.sb.block_size
        if node.fragment == INVALID_FRAG:
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
            words = [w for (w,) in _U32.iter_unpack(raw)]
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

    def readlink(self, node: Inode) -> bytes:
        if not node.is_symlink:
            raise OSError("not a symlink")
        return node.target

    # -- xattrs -------------------------------------------------------------------------------------

    def xattrs(self, node: Inode) -> dict[bytes, bytes]:
        """The inode's extended attributes, full names (``user.x``) to values, empty values kept."""
        if node.xattr == INVALID_XATTR:
            return {}
        what = f"inode {node.ino} xattrs"
        ref, count, size = self._table_entry(self._xattr_id_index, node.xattr, _XATTR_ID, "xattr id table")
        if count > 65536 or size > 1 << 26:
            raise DamagedImage(f"{what}: implausible count {count} or size {size}")
        pos = self._xattr_start + (ref >> 16)
        offset = ref & 0xFFFF
        if pos >= self.sb_end:
            raise DamagedImage(f"{what}: outside the xattr table")
        out: dict[bytes, bytes] = {}
        for _ in range(count):
            raw, pos, offset = self._meta_read(pos, offset, 4, what)
            ktype, nsize = fmt.XATTR_KEY.unpack(raw)
            prefix = fmt.XATTR_PREFIX_OF_ID.get(ktype & 0xFF)
            if prefix is None:
                raise DamagedImage(f"{what}: unknown prefix id {ktype & 0xFF}")
            name, pos, offset = self._meta_read(pos, offset, nsize, what)
            raw, pos, offset = self._meta_read(pos, offset, 4, what)
            (vsize,) = _U32.unpack(raw)
            if ktype & fmt.XATTR_VALUE_OUT_OF_LINE:
                if vsize != 8:
                    raise DamagedImage(f"{what}: out-of-line value reference of {vsize} bytes")
                raw, pos, offset = self._meta_read(pos, offset, 8, what)
                (vref,) = _U64.unpack(raw)
                vpos = self._xattr_start + (vref >> 16)
                raw, vpos, voff = self._meta_read(vpos, vref & 0xFFFF, 4, what)
                (vsize,) = _U32.unpack(raw)
                if vsize > 1 << 16:
                    raise DamagedImage(f"{what}: value of {vsize} bytes")
                value, _, _ = self._meta_read(vpos, voff, vsize, what)
            else:
                if vsize > 1 << 16:
                    raise DamagedImage(f"{what}: value of {vsize} bytes")
                value, pos, offset = self._meta_read(pos, offset, vsize, what)
            out[prefix + name] = value
        return out

    # -- filesystem ---------------------------------------------------------------------------------

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
        return {
            "block_hits": self._blocks.hits,
            "block_misses": self._blocks.misses,
            "block_bytes": self._blocks.weight,
            "meta_hits": self._meta.hits,
            "meta_misses": self._meta.misses,
        }


def walk(reader: SquashfsReader):
    """Every entry below the root, depth first in image order: yields (path, inode).

    A directory reached twice (a directory hard link or a loop back to an ancestor) is damage, so
    walking a hostile image ends; the stack replaces recursion, so depth costs no Python frames."""
    seen_dirs = {reader.root.ref}
    stack = [(b"", reader.root)]
    while stack:
        path, node = stack.pop()
        children = []
        for entry in reader.listdir(node):
            child = reader.lookup(node, entry.name)
            child_path = path + b"/" + entry.name
            yield child_path, child
            if child.is_dir:
                if child.ref in seen_dirs:
                    raise DamagedImage(
                        f"directory loop: {os.fsdecode(child_path)} is a directory "
                        f"already reached (inode {child.ino})"
                    )
                seen_dirs.add(child.ref)
                children.append((child_path, child))
        stack.extend(reversed(children))
