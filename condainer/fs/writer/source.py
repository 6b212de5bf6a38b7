"""Opening the scanned tree's regular files for reading: by directory descriptor and name.

The tree keeps names, not paths (scan.Tree). Files are read directory by directory, so each
directory is opened once (O_PATH) and its files relative to it: no path is built per file, and the
kernel walks one name instead of the whole path. A directory deeper than PATH_MAX is opened through
scan.reachable.
"""

from __future__ import annotations

import os
import stat

from condainer.fs.writer.scan import SHORT_PATH, Tree, reachable, read_xattrs

_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class SourceError(Exception):
    """Reading a source file failed; the caller names the file: ``before + path + after``."""

    def __init__(self, before: str, after: str) -> None:
        super().__init__(before, after)
        self.before = before
        self.after = after


class SourceFiles:
    """Opens entries of ``tree``; holds one directory descriptor at a time (close() releases it).

    ``xattrs``: read each file's extended attributes into the tree when it is opened; the scan
    leaves them to this for every non-empty regular file (scan.read_xattrs says why).
    """

    def __init__(self, tree: Tree, xattrs: bool) -> None:
        self._tree = tree
        self._xattrs = xattrs
        self._dir = -1  # entry number of the directory held open
        self._dir_fd = -1

    def open(self, entry: int) -> tuple[int, int]:
        """A descriptor of regular file ``entry`` and its st_ctime_ns (data.py checks that a file read
        twice did not change in between); SourceError if it is gone or no longer regular.

        O_NONBLOCK: a FIFO put in its place must not make the pack wait forever for a writer.
        """
        tree = self._tree
        directory = tree.parent[entry]
        try:
            if directory != self._dir:
                self._enter(directory)
            fd = os.open(tree.name(entry), _FILE_FLAGS, dir_fd=self._dir_fd)
        except OSError as exc:
            raise SourceError("cannot read ", f": {exc.strerror}") from exc
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise SourceError("", ": not a regular file any more (changed while being packed)")
        if self._xattrs:
            try:
                xattrs = read_xattrs(fd, self._tree)
            except OSError as exc:
                os.close(fd)
                raise SourceError("cannot read ", f": {exc.strerror}") from exc
            if xattrs:
                self._tree.xattrs[entry] = xattrs
        return fd, st.st_ctime_ns

    def read_whole(self, entry: int, size: int) -> tuple[bytes, int]:
        """All ``size`` bytes of a small file and its st_ctime_ns: open() and read_exactly() in one
        call, for the files most trees have most of."""
        fd, ctime = self.open(entry)
        try:
            return read_exactly(fd, size, 0), ctime
        finally:
            os.close(fd)

    def _enter(self, directory: int) -> None:
        self.close()
        path = self._tree.path(directory)
        if len(path) <= SHORT_PATH:
            self._dir_fd = os.open(path, _DIR_FLAGS)
        else:
            with reachable(path) as short:
                self._dir_fd = os.open(short, _DIR_FLAGS)
        self._dir = directory

    def close(self) -> None:
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
        self._dir, self._dir_fd = -1, -1


def read_exactly(fd: int, size: int, offset: int) -> bytes:
    """Exactly ``size`` bytes at ``offset``; a read error or an early end is a SourceError."""
    try:
        data = os.pread(fd, size, offset)
        while len(data) < size:
            more = os.pread(fd, size - len(data), offset + len(data))
            if not more:
                break
            data += more
    except OSError as exc:
        raise SourceError("cannot read ", f": {exc.strerror}") from exc
    if len(data) != size:
        raise SourceError("", ": file shrank while it was being packed")
    return data
