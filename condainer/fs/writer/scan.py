"""Walk a source tree into sorted entries: lstat, link counts within the tree, xattrs.

Paths are bytes throughout (``os.scandir(bytes)``) so names that are not UTF-8 survive. Symlinks are
stored, never followed. Only metadata is held in memory (a few hundred bytes per entry); file data is
read later, one file at a time, by data.py.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from condainer.errors import ImageError
from condainer.fs import format as fmt

SHORT_PATH = 3800  # PATH_MAX is 4096: leaves room for one more name (at most 255 bytes)
MAX_MTIME = (1 << 32) - 1  # inodes store mtime as u32 seconds: 1970-01-01 to 2106-02-07 06:28:15 UTC


class Entry:
    """One directory entry with what the image stores about its inode."""

    __slots__ = (
        "path",
        "name",
        "mode",
        "uid",
        "gid",
        "mtime",
        "size",
        "rdev",
        "key",
        "nlink",
        "xattrs",
        "children",
        "target",
        "parent",
        "inode_number",
        "data",
        "ref",
        "itype",
        "holey",
    )

    def __init__(self, path: bytes, name: bytes, st: os.stat_result, parent: Entry | None) -> None:
        self.path = path
        self.name = name
        self.mode = st.st_mode
        self.uid = st.st_uid
        self.gid = st.st_gid
        self.mtime = st.st_mtime_ns // 1_000_000_000
        self.size = st.st_size if stat.S_ISREG(st.st_mode) else 0
        self.holey = st.st_blocks * 512 < self.size  # a sparse file (or one the file system compressed)
        self.rdev = st.st_rdev
        # Non-directories with several links may be hard links of each other inside the tree.
        self.key = (st.st_dev, st.st_ino) if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode) else None
        self.nlink = 1
        self.xattrs: tuple[tuple[bytes, bytes], ...] = ()
        self.children: list[Entry] | None = [] if stat.S_ISDIR(st.st_mode) else None
        self.target: bytes | None = None
        self.parent = parent
        self.inode_number = 0
        self.data = None  # data.FileData once the file's blocks are written
        self.ref = -1  # inode reference once the inode is written
        self.itype = 0  # basic inode type, for directory entries

    @property
    def is_dir(self) -> bool:
        return self.children is not None


class Tree:
    """The scanned tree: root entry plus the counts the writer and progress bar need."""

    def __init__(self, root: Entry) -> None:
        self.root = root
        self.files = 0
        self.dirs = 0
        self.bytes_in = 0
        self.skipped_xattrs: set[bytes] = set()
        self.ids: set[int] = set()  # every uid and gid, so too many fail before any data is written
        self.odd_mtimes: list[Entry] = []  # mtimes outside squashfs's u32 seconds (before 1970, after 2106)
        self.links: dict[tuple[int, int], Entry] = {}  # (dev, ino) -> first name of a hard-link group

    def owner(self, entry: Entry) -> Entry:
        """The entry that owns the inode: the first name of its hard-link group, else itself."""
        return self.links.get(entry.key, entry) if entry.key is not None else entry


def printable(path: bytes) -> str:
    """``path`` for a one-line message: control characters and bytes that are not UTF-8 escaped."""
    text = path.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@contextlib.contextmanager
def reachable(path: bytes) -> Iterator[bytes]:
    """``path``, or an equivalent path short enough for system calls when it is not.

    The kernel takes paths up to PATH_MAX (4096 bytes) but trees may nest deeper than that. A long
    path is walked in slices through O_PATH directory descriptors and given back as
    ``/proc/self/fd/N/rest``. The result is at most SHORT_PATH bytes, so a name can be joined to it.
    """
    if len(path) <= SHORT_PATH:
        yield path
        return
    fd = -1
    try:
        prefix, rest = b"", path
        while len(prefix) + len(rest) > SHORT_PATH:
            cut = rest.rfind(b"/", 1, SHORT_PATH - 32)
            if cut < 0:
                break  # no slice fits; the system call will say ENAMETOOLONG
            new = os.open(prefix + rest[:cut], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            if fd >= 0:
                os.close(fd)
            fd = new
            prefix, rest = b"/proc/self/fd/%d/" % fd, rest[cut + 1 :]
        yield prefix + rest
    finally:
        if fd >= 0:
            os.close(fd)


def _read_xattrs(path: bytes, tree: Tree) -> tuple[tuple[bytes, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return ()
        raise
    pairs = []
    for name in names:
        raw = os.fsencode(name)
        if not any(raw.startswith(p) for p in fmt.XATTR_PREFIXES):
            tree.skipped_xattrs.add(raw)  # e.g. system.posix_acl_*: squashfs cannot store them
            continue
        pairs.append((raw, os.getxattr(path, name, follow_symlinks=False)))
    return tuple(sorted(pairs))


def scan_tree(src: bytes, skip: set[tuple[int, int]] | frozenset = frozenset()) -> Tree:
    """Scan ``src`` (a directory) into a Tree; ``skip`` holds (dev, ino) pairs to leave out.

    Children are sorted by raw name bytes: the order directory listings must have.
    Raises ImageError for anything that cannot be read.
    """
    src = os.path.realpath(src)  # the source itself may be reached through a symlink; nothing below it
    try:
        st = os.lstat(src)
    except OSError as exc:
        raise ImageError(f"cannot read {printable(src)}: {exc.strerror}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{printable(src)}: not a directory")
    root = Entry(src, b"", st, None)
    tree = Tree(root)
    tree.ids.update((st.st_uid, st.st_gid))
    if not 0 <= root.mtime <= MAX_MTIME:
        tree.odd_mtimes.append(root)
    links = tree.links
    stack = [root]
    current = src
    try:
        while stack:
            directory = stack.pop()
            current = directory.path
            tree.dirs += 1
            with reachable(directory.path) as here:
                directory.xattrs = _read_xattrs(here, tree)
                names = sorted(os.listdir(here))  # the names only: no DirEntry object per name
                subdirs = []
                prefix = directory.path.rstrip(b"/") + b"/"
                local_prefix = here.rstrip(b"/") + b"/"  # the same directory, by a path short enough to use
                for name in names:
                    path = prefix + name
                    local = local_prefix + name
                    current = path
                    est = os.lstat(local)
                    if (est.st_dev, est.st_ino) in skip:
                        continue
                    entry = Entry(path, name, est, directory)
                    directory.children.append(entry)
                    tree.ids.update((est.st_uid, est.st_gid))
                    if not 0 <= entry.mtime <= MAX_MTIME:
                        tree.odd_mtimes.append(entry)
                    if entry.is_dir:
                        subdirs.append(entry)
                        continue
                    if entry.key is not None:
                        first = links.get(entry.key)
                        if first is not None:
                            first.nlink += 1  # count only links that are inside the tree
                            entry.nlink = 0  # marks "same inode as links[key]"
                            continue
                        links[entry.key] = entry
                    entry.xattrs = _read_xattrs(local, tree)
                    if stat.S_ISLNK(est.st_mode):
                        entry.target = os.readlink(local)
                    elif stat.S_ISREG(est.st_mode):
                        tree.files += 1
                        tree.bytes_in += entry.size
            stack.extend(reversed(subdirs))
    except OSError as exc:
        raise ImageError(f"cannot read {printable(current)}: {exc.strerror}") from exc
    # Link counts are known only after the whole walk; share them with the other names.
    for entry in _walk(root):
        if entry.nlink == 0:
            entry.nlink = links[entry.key].nlink
    return tree


def _walk(root: Entry):
    stack = [root]
    while stack:
        entry = stack.pop()
        yield entry
        if entry.children:
            stack.extend(entry.children)
