"""File data -> data blocks and fragment blocks ("Data and Fragment Blocks" in doc/format.adoc).

Streaming by design: files are read one block at a time and handed to the ordered pipeline
(pipeline.py), which compresses them in parallel and writes them in order.

Space savers, as mksquashfs does them: identical files are stored once (files sharing a size are
hashed first, SHA-256), all-zero blocks become sparse holes (size 0, nothing written; blocks in
holes of the source file are not even read), and small files and the tails of large ones are packed
together into fragment blocks.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import os
import stat
from array import array
from collections.abc import Callable, Iterable

from condainer.errors import ImageError
from condainer.fs import format as fmt
from condainer.fs.writer.pipeline import BlockPipeline, Placed
from condainer.fs.writer.scan import SHORT_PATH, printable, reachable

SMALL_FILE_BLOCKS = 8  # files up to this many blocks are read in one go

# --- files and fragments ----------------------------------------------------------------------


_NO_BLOCKS = array("I")  # shared by every file without full blocks (never written to)


class FileData(Placed):
    """Where a regular file's data went: what its inode records."""

    __slots__ = ("size", "start", "blocks", "fragment", "offset", "sparse")

    def __init__(self, size: int, nblocks: int) -> None:
        self.size = size
        self.start = 0
        self.blocks = array("I", bytes(4 * nblocks)) if nblocks else _NO_BLOCKS  # size words; 0 = hole
        self.fragment = fmt.NO_FRAGMENT
        self.offset = 0
        self.sparse = 0

    def placed(self, index: int, position: int, word: int) -> None:
        if index < 0:
            self.start = position
        else:
            self.blocks[index] = word


class FragmentPacker(Placed):
    """Packs tails into fragment blocks in arrival order; keeps the fragment table entries."""

    def __init__(self, pipeline: BlockPipeline, block_size: int) -> None:
        self._pipeline = pipeline
        self._block_size = block_size
        self._buffer = bytearray()
        self.entries: list[tuple[int, int]] = []  # (start, size word) per fragment block

    def add(self, tail: bytes) -> tuple[int, int]:
        """Place a tail; returns (fragment index, offset in the fragment block)."""
        if len(self._buffer) + len(tail) > self._block_size:
            self.flush()
        offset = len(self._buffer)
        self._buffer += tail
        return len(self.entries), offset

    def flush(self) -> None:
        if not self._buffer:
            return
        self.entries.append((0, 0))
        self._pipeline.add(bytes(self._buffer), self, len(self.entries) - 1)
        self._buffer.clear()

    def placed(self, index: int, position: int, word: int) -> None:
        self.entries[index] = (position, word)


class DataWriter:
    """Turns regular files into FileData records, streaming their blocks through the pipeline."""

    def __init__(
        self,
        pipeline: BlockPipeline,
        block_size: int,
        sizes: Iterable[int],
        on_file: Callable[[int], None] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._bs = block_size
        self._zero = bytes(block_size)
        self._zero_digest = hashlib.sha256(self._zero).digest()
        self.fragments = FragmentPacker(pipeline, block_size)
        counts = collections.Counter(s for s in sizes if s)
        self._dup_sizes = {s for s, n in counts.items() if n > 1}
        self._by_hash: dict[tuple[int, bytes], FileData] = {}
        self._on_file = on_file
        self.duplicates = 0

    def add_file(self, path: bytes, size: int) -> FileData:
        """Store one file's data (or find its twin) and return where it lives."""
        if size == 0:
            record = FileData(0, 0)  # nothing to read: no blocks, no fragment
        elif size < self._bs:
            record = self._store_tail(path, size)
        else:
            fd = _open_regular(path)
            # Only reads are reported as "cannot read": the pipeline may write the image from in
            # here, and its errors (a full disk) belong to the image.
            try:
                record = self._store(fd, path, size)
            finally:
                os.close(fd)
        if self._on_file:
            self._on_file(size)
        return record

    def _store_tail(self, path: bytes, size: int) -> FileData:
        """A file smaller than one block: the common case, so one read and no block loop.

        Same result as _store (the tail goes to the fragment packer, twins share one record), with
        the fewest Python calls per file: on trees of small files this is the writer's hot path.
        """
        data = _read_file(path, size)
        key = None
        if size in self._dup_sizes:
            key = (size, hashlib.sha256(data).digest())
            twin = self._by_hash.get(key)
            if twin is not None:
                self.duplicates += 1
                return twin
        record = FileData(size, 0)
        record.fragment, record.offset = self.fragments.add(data)
        if key is not None:
            self._by_hash[key] = record
        return record

    def _store(self, fd: int, path: bytes, size: int) -> FileData:
        # Files up to a few blocks are read once into memory (hashing and storing share the read);
        # larger duplicate candidates are hashed block by block, then read again. Blocks of larger
        # files that lie in holes of the source are not read at all: they are zeros.
        bs = self._bs
        whole = _read(fd, path, size, 0) if size <= SMALL_FILE_BLOCKS * bs else None
        key = None
        if size in self._dup_sizes:
            digest = hashlib.sha256()
            if whole is not None:
                digest.update(whole)
            else:
                # A hash of block hashes, so a hole's block costs a precomputed digest, not a read.
                holes = _Holes(fd, size)
                for done in range(0, size, bs):
                    n = min(bs, size - done)
                    if n == bs and holes.covers(done, n):
                        digest.update(self._zero_digest)
                    else:
                        digest.update(hashlib.sha256(_read(fd, path, n, done)).digest())
            key = (size, digest.digest())
            twin = self._by_hash.get(key)
            if twin is not None:
                self.duplicates += 1
                return twin
        full, tail = divmod(size, bs)
        record = FileData(size, full)
        if full:
            self._pipeline.mark(record, -1)
        holes = _Holes(fd, size) if whole is None else None
        for i in range(full):
            if holes is not None and holes.covers(i * bs, bs):
                record.sparse += bs
                continue
            block = whole[i * bs : (i + 1) * bs] if whole is not None else _read(fd, path, bs, i * bs)
            if block == self._zero:
                record.sparse += bs
            else:
                self._pipeline.add(block, record, i)
        if tail:
            data = whole[full * bs :] if whole is not None else _read(fd, path, tail, full * bs)
            record.fragment, record.offset = self.fragments.add(data)
        if key is not None:
            self._by_hash[key] = record
        return record

    def finish(self) -> None:
        self.fragments.flush()


def _open_regular(path: bytes) -> int:
    """Open a file the scan saw as regular; fail if it is something else by now.

    O_NONBLOCK: a FIFO put in its place must not make the pack wait forever for a writer.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        if len(path) <= SHORT_PATH:  # nearly always: spare the context manager, once per file
            fd = os.open(path, flags)
        else:
            with reachable(path) as short:
                fd = os.open(short, flags)
    except OSError as exc:
        raise ImageError(f"cannot read {printable(path)}: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageError(f"{printable(path)}: not a regular file any more (changed while being packed)")
    return fd


def _read_file(path: bytes, size: int) -> bytes:
    """The whole of a small regular file: open, check, read, close in one call (see _open_regular)."""
    fd = _open_regular(path)
    try:
        return _read(fd, path, size, 0)
    finally:
        os.close(fd)


class _Holes:
    """Where a file's holes are (SEEK_DATA/SEEK_HOLE), asked about ranges in increasing order.

    A file system that cannot tell reports the whole file as data, which is merely slower.
    """

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        self._data = self._data_end = -1  # the data region found last: [_data, _data_end)

    def covers(self, offset: int, length: int) -> bool:
        """True when [offset, offset + length) lies wholly in a hole, so it reads as zeros."""
        if offset >= self._data_end:
            try:
                self._data = os.lseek(self._fd, offset, os.SEEK_DATA)
                self._data_end = os.lseek(self._fd, self._data, os.SEEK_HOLE)
            except OSError as exc:
                # ENXIO: no data from offset to the end; anything else: treat the rest as data.
                self._data = self._size if exc.errno == errno.ENXIO else offset
                self._data_end = self._size
        return offset + length <= self._data


def _read(fd: int, path: bytes, size: int, offset: int) -> bytes:
    """Exactly ``size`` bytes at ``offset``; a read error or an early end is a one-line ImageError."""
    try:
        data = os.pread(fd, size, offset)
        while len(data) < size:
            more = os.pread(fd, size - len(data), offset + len(data))
            if not more:
                break
            data += more
    except OSError as exc:
        raise ImageError(f"cannot read {printable(path)}: {exc.strerror}") from exc
    if len(data) != size:
        raise ImageError(f"{printable(path)}: file shrank while it was being packed")
    return data
