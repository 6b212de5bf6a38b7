"""``cnd image check``: read every inode, directory listing, data block and fragment of an image."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from condainer.errors import ImageError
from condainer.fs import format as fmt
from condainer.fs.reader import DamagedImage, SquashfsReader, walk

READ_CHUNK = 1 << 20


@dataclass
class CheckResult:
    """What a successful check read."""

    image: str
    inodes: int = 0  # distinct inodes reached from the root (hard links once), root included
    entries: int = 0  # directory entries, hard links counted each time
    directories: int = 0
    files: int = 0
    symlinks: int = 0
    others: int = 0  # devices, fifos, sockets
    data_bytes: int = 0  # regular file bytes read, hard links once
    fragments: int = 0
    xattrs: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"{self.inodes} inodes: {self.directories} directories, {self.files} files, "
            f"{self.symlinks} symlinks, {self.others} other; {self.data_bytes / 1e6:.1f} MB of file data, "
            f"{self.fragments} fragment blocks, {self.xattrs} xattrs read in {self.seconds:.2f} s"
        )


def _located(path: str, message: str) -> str:
    return message if message.startswith(path) else f"{path}: {message}"


def check_image(image: os.PathLike) -> CheckResult:
    """Read all of IMAGE; raise ImageError naming the first damage found."""
    path = os.fspath(image)
    t0 = time.monotonic()
    try:
        reader = SquashfsReader(path, cache_bytes=8 << 20)
    except DamagedImage as e:
        raise ImageError(_located(path, e.message)) from None
    result = CheckResult(image=path, inodes=1, directories=1)
    where = "/"
    try:
        with reader:
            result.xattrs += len(reader.xattrs(reader.root))
            seen: set[int] = {reader.root.ref}
            for p, node in walk(reader):
                where = os.fsdecode(p)
                result.entries += 1
                if node.ref in seen:
                    continue
                seen.add(node.ref)
                result.inodes += 1
                result.xattrs += len(reader.xattrs(node))
                if node.is_dir:
                    result.directories += 1
                elif node.is_reg:
                    result.files += 1
                    for off in range(0, node.size, READ_CHUNK):
                        result.data_bytes += len(reader.read(node, off, READ_CHUNK))
                elif node.is_symlink:
                    result.symlinks += 1
                    reader.readlink(node)
                else:
                    result.others += 1
            where = "export table"
            # Inodes by number, reachable or not: each must parse and carry its own number.
            for ino, ref in reader.export_refs():
                node = reader.inode(ref)
                if node.ino != ino:
                    raise DamagedImage(f"entry {ino} points at inode {node.ino}")
            where = "fragment table"
            # Fragments no file uses are still part of the image: read them too.
            for n in range(reader.sb.fragments):
                start, word = reader.fragment(n)
                if word != fmt.NO_FRAGMENT:
                    reader.data_block(start, word, None, f"fragment {n}")
                result.fragments += 1
            if result.inodes > reader.sb.inodes:
                raise DamagedImage(f"{result.inodes} inodes reached, superblock counts {reader.sb.inodes}")
    except DamagedImage as e:
        raise ImageError(f"{path}: {where}: {e.message}") from None
    except RecursionError:
        raise ImageError(f"{path}: {where}: structure nested too deeply") from None
    result.seconds = time.monotonic() - t0
    return result
