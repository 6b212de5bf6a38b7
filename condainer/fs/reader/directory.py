"""Directory listings ("Directory Table" in doc/format.adoc): parsed when a directory is first looked up.

Nothing is walked at open: a listing is read in one piece, checked (sorted, unique, sane names and
types) and kept, with a name -> entry map, in a bounded cache.  Paths are resolved one name at a
time, and resolved directories are remembered.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from condainer.fs import format as fmt
from condainer.fs.reader.cache import LRUCache
from condainer.fs.reader.damaged import DamagedImage
from condainer.fs.reader.inodes import Inode, InodeTable
from condainer.fs.reader.metadata import METADATA_SIZE


class DirEntry:
    """One name in a directory listing: what lookup and readdir hand out without reading the inode."""

    __slots__ = ("name", "ref", "type", "ino")

    def __init__(self, name: bytes, ref: int, type_: int, ino: int) -> None:
        self.name = name
        self.ref = ref
        self.type = type_
        self.ino = ino


class DirectoryTable(InodeTable):
    """Listings, lookups by name and by path."""

    root: Inode
    _dirs: LRUCache
    _paths: LRUCache

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
        hsize, esize = fmt.DIR_HEADER.size, fmt.DIR_ENTRY.size
        while i < size:
            if i + hsize > size:
                raise DamagedImage(f"{what}: listing ends inside a header")
            count, start_block, base = header_unpack(data, i)
            i += hsize
            if count >= fmt.DIR_MAX_RUN:
                raise DamagedImage(f"{what}: header with {count + 1} entries")
            for _ in range(count + 1):
                if i + esize > size:
                    raise DamagedImage(f"{what}: listing overruns its size")
                eoff, delta, etype, nsize = entry_unpack(data, i)
                nsize += 1
                if nsize > fmt.MAX_NAME:
                    raise DamagedImage(f"{what}: entry name of {nsize} bytes")
                name = data[i + esize : i + esize + nsize]
                i += esize + nsize
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

    def listdir(self, dirnode: Inode) -> list[DirEntry]:
        """A directory's entries in image (byte) order."""
        return self.listing(dirnode)[0]


def walk(reader: DirectoryTable) -> Iterator[tuple[bytes, Inode]]:
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

