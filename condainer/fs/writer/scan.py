"""Walk a source tree into sorted entries: lstat, link counts within the tree, xattrs.

The tree is listed one directory at a time (Scanner.list), in the order the image writer reaches
them, so file data starts flowing at once instead of after the whole tree is listed.

Paths are bytes throughout so names that are not UTF-8 survive. Symlinks are stored, never followed.
Only metadata is held in memory, and little of it per entry (see Tree): file data is read later,
one file at a time, by data.py.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from array import array
from collections.abc import Iterator

from condainer.errors import ImageError
from condainer.fs import format as fmt

SHORT_PATH = 3800  # PATH_MAX is 4096: leaves room for one more name (at most 255 bytes)
MAX_MTIME = (1 << 32) - 1  # inodes store mtime as u32 seconds: 1970-01-01 to 2106-02-07 06:28:15 UTC


class Tree:
    """The scanned tree, one column per field, indexed by entry number (the root is entry 0).

    A million entries as Python objects cost about a kilobyte each (the object, its ints, its path);
    typed arrays store the same fields in 50-odd bytes. Entries are numbered in scan order, and a
    directory's children are listed together, so they are a contiguous, name-sorted range of numbers.
    Full paths are not stored: ``path()`` rebuilds one from the names (for messages and reading).
    Fields that few entries have live in dicts keyed by entry number.
    """

    def __init__(self, root: bytes) -> None:
        self.root_path = root
        # Every name back to back (bytes once scanned): entry i's is names[name_at[i] : name_at[i + 1]].
        self.names: bytes | bytearray = bytearray()
        self.name_at = array("Q", [0])
        self.mode = array("I")
        self.uid = array("I")
        self.gid = array("I")
        self.mtime = array("q")  # seconds; may lie outside u32 until _check_mtimes has seen it
        self.size = array("Q")  # regular files only, else 0
        self.parent = array("i")  # -1 for the root
        self.children: dict[int, range] = {}  # directory -> its entries
        self.xattrs: dict[int, tuple[tuple[bytes, bytes], ...]] = {}
        self.target: dict[int, bytes] = {}  # symlink -> target
        self.rdev: dict[int, int] = {}  # character and block devices
        self.holey: set[int] = set()  # regular files with holes (st_blocks < size)
        self.owner_of: dict[int, int] = {}  # a hard link -> the first name of its group (inode owner)
        self.link_count: dict[int, int] = {}  # inode owner -> names inside the tree, where more than 1
        self.files = 0
        self.dirs = 0
        self.bytes_in = 0
        self.skipped_xattrs: set[bytes] = set()
        self.odd_mtimes: list[int] = []  # mtimes outside squashfs's u32 seconds (before 1970, after 2106)

    def __len__(self) -> int:
        return len(self.mode)

    def add(self, name: bytes, st: os.stat_result, parent: int) -> int:
        """Append one entry; returns its number."""
        index = len(self.mode)
        self.names += name
        self.name_at.append(len(self.names))
        mode = st.st_mode
        self.mode.append(mode)
        self.uid.append(st.st_uid)
        self.gid.append(st.st_gid)
        mtime = st.st_mtime_ns // 1_000_000_000
        self.mtime.append(mtime)
        if not 0 <= mtime <= MAX_MTIME:
            self.odd_mtimes.append(index)
        size = st.st_size if stat.S_ISREG(mode) else 0
        self.size.append(size)
        if st.st_blocks * 512 < size:
            self.holey.add(index)  # a sparse file (or one the file system compressed)
        self.parent.append(parent)
        return index

    def ids(self) -> set[int]:
        """Every uid and gid in the tree, so that too many fail before the inodes are written."""
        return set(self.uid).union(self.gid)

    def name(self, index: int) -> bytes:
        return bytes(self.names[self.name_at[index] : self.name_at[index + 1]])  # bytes during the scan too

    def path(self, index: int) -> bytes:
        """The entry's full path, from its names up to the root."""
        parts = []
        while index > 0:
            parts.append(self.name(index))
            index = self.parent[index]
        if not parts:
            return self.root_path
        return self.root_path.rstrip(b"/") + b"/" + b"/".join(reversed(parts))  # the root "/" has its own


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


def read_xattrs(where: bytes | int, tree: Tree) -> tuple[tuple[bytes, bytes], ...]:
    """The extended attributes squashfs can store, sorted, of a path (not followed if a symlink)
    or of an open file; the names of those it cannot store are added to ``tree.skipped_xattrs``.

    By descriptor where one is open anyway: listxattr has no form relative to a directory, and by
    path the kernel walks every component again (2-3 us a file here, against under 1)."""
    # A path's last component is not followed if a symlink; a descriptor is the file itself, and
    # Python refuses follow_symlinks=False with one.
    follow = isinstance(where, int)
    try:
        names = os.listxattr(where, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return ()
        raise
    if not names:
        return ()  # nearly every entry: no list, sort or tuple for it
    pairs = []
    for name in names:
        raw = os.fsencode(name)
        if not any(raw.startswith(p) for p in fmt.XATTR_PREFIXES):
            tree.skipped_xattrs.add(raw)  # e.g. system.posix_acl_*: squashfs cannot store them
            continue
        pairs.append((raw, os.getxattr(where, name, follow_symlinks=follow)))
    return tuple(sorted(pairs))


class Scanner:
    """Lists a tree one directory at a time, in the order the caller asks (image.py: as it writes).

    Entries are numbered in listing order; a directory's children are listed together, name-sorted,
    so they are a contiguous range. A subdirectory is known (``tree.children`` holds an empty range
    for it) before it is listed. ``finish()`` once every directory is listed.
    """

    def __init__(self, src: bytes, skip: set[tuple[int, int]] | frozenset = frozenset()) -> None:
        src = os.path.realpath(src)  # the source itself may be reached through a symlink; nothing below it
        try:
            st = os.lstat(src)
        except OSError as exc:
            raise ImageError(f"cannot read {printable(src)}: {exc.strerror}") from exc
        if not stat.S_ISDIR(st.st_mode):
            raise ImageError(f"{printable(src)}: not a directory")
        self.tree = Tree(src)
        self.tree.add(b"", st, -1)
        self.tree.children[0] = range(0)
        self._skip = skip
        self._first_name: dict[tuple[int, int], int] = {}  # (dev, ino) -> first name of a hard-link group
        self._paths = {0: src}  # directories known but not listed yet -> their paths

    def list(self, directory: int) -> list[int]:
        """List ``directory`` into the tree; returns its subdirectories, in name order."""
        tree, skip, first_name = self.tree, self._skip, self._first_name
        dir_path = self._paths.pop(directory)
        name = b""  # what is being read, for the one-line error (no path built per entry)
        tree.dirs += 1
        try:
            with reachable(dir_path) as here:
                xattrs = read_xattrs(here, tree)
                if xattrs:
                    tree.xattrs[directory] = xattrs
                names = sorted(os.listdir(here))  # the names only: no DirEntry object per name
                subdirs = []
                prefix = dir_path.rstrip(b"/") + b"/"
                local_prefix = here.rstrip(b"/") + b"/"  # the same directory, by a path short enough to use
                first = len(tree)
                # lstat and readlink by name in the open directory: the kernel walks one name, not the
                # whole path. listxattr has no such form: a non-empty regular file's are read by
                # descriptor when it is opened to be read (source.py), the others' here by path.
                dir_fd = os.open(here, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    for name in names:
                        est = os.lstat(name, dir_fd=dir_fd)
                        if (est.st_dev, est.st_ino) in skip:
                            continue
                        index = tree.add(name, est, directory)
                        mode = est.st_mode
                        if stat.S_ISDIR(mode):
                            subdirs.append(index)
                            self._paths[index] = prefix + name
                            continue
                        if est.st_nlink > 1:  # may be hard links of each other inside the tree
                            key = (est.st_dev, est.st_ino)
                            owner = first_name.get(key)
                            if owner is not None:
                                tree.link_count[owner] += 1  # count only links that are inside the tree
                                tree.owner_of[index] = owner
                                continue
                            first_name[key] = index
                            tree.link_count[index] = 1
                        if stat.S_ISREG(mode):
                            tree.files += 1
                            tree.bytes_in += est.st_size
                            if est.st_size:
                                continue  # its xattrs are read when it is opened (source.py)
                        xattrs = read_xattrs(local_prefix + name, tree)
                        if xattrs:
                            tree.xattrs[index] = xattrs
                        if stat.S_ISLNK(mode):
                            tree.target[index] = os.readlink(name, dir_fd=dir_fd)
                        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                            tree.rdev[index] = est.st_rdev
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            current = dir_path.rstrip(b"/") + b"/" + name if name else dir_path
            raise ImageError(f"cannot read {printable(current)}: {exc.strerror}") from exc
        tree.children[directory] = range(first, len(tree))
        for index in subdirs:
            tree.children[index] = range(0)  # known to be a directory before it is listed
        return subdirs

    def finish(self) -> Tree:
        """The complete tree, once every directory is listed."""
        tree = self.tree
        tree.names = bytes(tree.names)  # slices of bytes are bytes, as names must be
        # A group found once has no other name in the tree: an ordinary inode after all.
        for owner in [o for o, n in tree.link_count.items() if n == 1]:
            del tree.link_count[owner]
        return tree
