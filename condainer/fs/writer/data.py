"""File data -> data blocks and fragment blocks ("Data and Fragment Blocks" in doc/format.adoc).

Streaming by design: files are read one block at a time and handed to the ordered pipeline
(pipeline.py), which compresses them in parallel and writes them in order.

Space savers, as mksquashfs does them: identical files are stored once (files sharing a size are
hashed, SHA-256; twins.py), all-zero blocks become sparse holes (size 0, nothing written; blocks in
holes of the source file are not even read), and small files and the tails of large ones are packed
together into fragment blocks.

Where a file's data went is a data record, numbered in order: its fragment and offset in typed
arrays (8 bytes a file), and for the few files with full blocks a BlockList object. Twins share
one record.
"""

from __future__ import annotations

import errno
import hashlib
import os
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING

from condainer.errors import ImageError
from condainer.fs import format as fmt
from condainer.fs.writer.fragments import FragmentPacker
from condainer.fs.writer.pipeline import BlockPipeline, Placed
from condainer.fs.writer.scan import Tree, printable
from condainer.fs.writer.source import SourceError, SourceFiles, read_exactly
from condainer.fs.writer.twins import HASHED, FirstOfSize, TwinIndex

if TYPE_CHECKING:
    from condainer.fs.writer.reuse import OldImage

SMALL_FILE_BLOCKS = 8  # files up to this many blocks are read in one go

# --- files and fragments ----------------------------------------------------------------------


class BlockList(Placed):
    """Where the full blocks of a file of at least one block went: what its inode lists."""

    __slots__ = ("start", "blocks", "sparse", "unplaced", "copies")

    def __init__(self, nblocks: int) -> None:
        self.start = 0
        self.blocks = array("I", bytes(4 * nblocks))  # size words; 0 = hole
        self.sparse = 0  # bytes of all-zero blocks, stored as holes
        self.unplaced = 0  # start mark and blocks queued but not written yet: the list is final at 0
        self.copies = 0  # blocks copied from an old image

    def queue_start(self, pipeline: BlockPipeline) -> None:
        """Have the pipeline report where the file's data starts (placed(-1, ...))."""
        self.unplaced += 1
        pipeline.mark(self, -1)

    def queue_block(self, pipeline: BlockPipeline, block: bytes, index: int) -> None:
        self.unplaced += 1
        pipeline.add(block, self, index)

    def queue_candidate(self, pipeline: BlockPipeline, block: bytes, index: int, old: tuple[int, int]) -> None:
        """Queue a block that the old image may hold already at ``old`` (position, size word)."""
        self.unplaced += 1
        pipeline.add_candidate(block, (old,), self, index)

    def copied(self, index: int) -> None:
        self.copies += 1

    def placed(self, index: int, position: int, word: int) -> None:
        if index < 0:
            self.start = position
        else:
            self.blocks[index] = word
        self.unplaced -= 1


class DataWriter:
    """Stores regular files as data records, streaming their blocks through the pipeline."""

    def __init__(
        self,
        pipeline: BlockPipeline,
        block_size: int,
        tree: Tree,
        on_file: Callable[[int], None] | None = None,
        reuse: OldImage | None = None,
    ) -> None:
        """``reuse``: the previous image (reuse.OldImage) whose blocks may be copied, or None."""
        self._pipeline = pipeline
        self._bs = block_size
        self._zero = bytes(block_size)
        self._zero_digest = hashlib.sha256(self._zero).digest()
        self._tree = tree
        self._files = SourceFiles(tree, xattrs=True)
        self._earlier = SourceFiles(tree, xattrs=False)  # reads a file stored earlier again, in its own directory
        self.fragments = FragmentPacker(pipeline, block_size, reuse)
        self._reuse = reuse
        self._first_of_size = FirstOfSize()
        self._twins = TwinIndex()
        self._on_file = on_file
        self.record_of = array("I")  # per entry (a regular inode's owner): its data record
        # Per data record:
        self.fragment = array("I")  # fragment block index, or fmt.NO_FRAGMENT
        self.offset = array("I")  # offset of the tail in that fragment block
        self.blocks: dict[int, BlockList] = {}  # records with full blocks

    def add_file(self, entry: int, size: int) -> int:
        """Store one file's data (or find its twin); returns its data record number."""
        try:
            if size == 0:
                record = self._new_record()  # nothing to read: no blocks, no fragment
            elif size < self._bs:
                record = self._store_tail(entry, size)
            else:
                fd, ctime = self._files.open(entry)
                # Only reads are reported as "cannot read": the pipeline may write the image from
                # in here, and its errors (a full disk) belong to the image.
                try:
                    record = self._store(entry, fd, ctime, size)
                finally:
                    os.close(fd)
        except SourceError as exc:
            raise self._named(exc, entry) from exc
        record_of = self.record_of
        if entry >= len(record_of):
            record_of.frombytes(bytes(4 * (len(self._tree) - len(record_of))))  # the tree grew
        record_of[entry] = record
        if self._on_file:
            self._on_file(size)
        return record

    def _new_record(self) -> int:
        self.fragment.append(fmt.NO_FRAGMENT)
        self.offset.append(0)
        return len(self.fragment) - 1

    def _twin(self, first: tuple[int, int, int], size: int, digest: bytes, record: int) -> int:
        """The record of an earlier file of the same size and digest, else ``record`` (remembered).

        ``first``: what FirstOfSize said of the first file of this size; if it was not hashed yet,
        it is read again and hashed now, so the index sees it before this file, as it came.
        """
        first_record, first_entry, first_ctime = first
        if first_record != HASHED:
            self._twins.find_or_add(size, self._digest_again(first_entry, size, first_ctime), first_record)
        return self._twins.find_or_add(size, digest, record)

    def _digest_again(self, entry: int, size: int, ctime: int) -> bytes:
        """The digest of a file stored earlier, read again: it must be what was stored (same ctime)."""
        try:
            fd, now = self._earlier.open(entry)
            try:
                if now != ctime:
                    raise SourceError("", ": changed while it was being packed")
                return self._digest(fd, size, None)
            finally:
                os.close(fd)
        except SourceError as exc:
            raise self._named(exc, entry) from exc

    def _named(self, exc: SourceError, entry: int) -> ImageError:
        """The one-line error for a failed read, naming the file it was about."""
        return ImageError(exc.before + printable(self._tree.path(entry)) + exc.after)

    def _digest(self, fd: int, size: int, whole: bytes | None) -> bytes:
        """SHA-256 of the content; above SMALL_FILE_BLOCKS blocks, of its block digests, so a hole's
        block costs a precomputed digest, not a read. ``whole``: the content, if already read."""
        bs = self._bs
        if whole is None and size <= SMALL_FILE_BLOCKS * bs:
            whole = read_exactly(fd, size, 0)
        if whole is not None:
            return hashlib.sha256(whole).digest()
        digest = hashlib.sha256()
        holes = _Holes(fd, size)
        for done in range(0, size, bs):
            n = min(bs, size - done)
            if n == bs and holes.covers(done, n):
                digest.update(self._zero_digest)
            else:
                digest.update(hashlib.sha256(read_exactly(fd, n, done)).digest())
        return digest.digest()

    def _store_tail(self, entry: int, size: int) -> int:
        """A file smaller than one block: the common case, so one read and no block loop.

        Same result as _store (the tail goes to the fragment packer, twins share one record), with
        the fewest Python calls per file: on trees of small files this is the writer's hot path.
        """
        data, ctime = self._files.read_whole(entry, size)
        record = len(self.fragment)
        first = self._first_of_size.first(size, record, entry, ctime)
        if first is not None:  # a size seen before: hashed, and maybe a twin
            twin = self._twin(first, size, hashlib.sha256(data).digest(), record)
            if twin != record:
                return twin
        fragment, offset = self.fragments.add(data)
        self.fragment.append(fragment)
        self.offset.append(offset)
        return record

    def _store(self, entry: int, fd: int, ctime: int, size: int) -> int:
        # Files up to a few blocks are read once into memory (hashing and storing share the read);
        # larger duplicate candidates are hashed block by block, then read again. Blocks of larger
        # files that lie in holes of the source are not read at all: they are zeros.
        bs = self._bs
        whole = read_exactly(fd, size, 0) if size <= SMALL_FILE_BLOCKS * bs else None
        record = len(self.fragment)
        first = self._first_of_size.first(size, record, entry, ctime)
        if first is not None:  # a size seen before: hashed, and maybe a twin
            twin = self._twin(first, size, self._digest(fd, size, whole), record)
            if twin != record:
                return twin
        self._new_record()
        full, tail = divmod(size, bs)
        blocks = self.blocks[record] = BlockList(full)
        blocks.queue_start(self._pipeline)
        holes = _Holes(fd, size) if whole is None else None
        old = self._reuse.blocks_of(size, fd, whole) if self._reuse is not None else None
        for i in range(full):
            if holes is not None and holes.covers(i * bs, bs):
                blocks.sparse += bs
                continue
            block = whole[i * bs : (i + 1) * bs] if whole is not None else read_exactly(fd, bs, i * bs)
            if block == self._zero:
                blocks.sparse += bs
            elif old is not None and old[i][1]:
                blocks.queue_candidate(self._pipeline, block, i, old[i])
            else:
                blocks.queue_block(self._pipeline, block, i)
        if tail:
            data = whole[full * bs :] if whole is not None else read_exactly(fd, tail, full * bs)
            self.fragment[record], self.offset[record] = self.fragments.add(data)
        return record

    def finish(self) -> None:
        """Flush the last fragment block; forget the dedup indexes (no file comes after)."""
        self.fragments.flush()
        self._twins = TwinIndex()
        self._first_of_size = FirstOfSize()

    def copied_files(self) -> int:
        """Files (data records) whose every block and tail was copied from the old image."""
        reused, blocks, fragment = self.fragments.reused, self.blocks, self.fragment
        count = 0
        for record in range(len(fragment)):
            frag = fragment[record]
            full = blocks.get(record)
            if full is None and frag == fmt.NO_FRAGMENT:
                continue  # an empty file: nothing to copy
            if full is not None and full.copies != len(full.blocks) - full.blocks.count(0):
                continue
            if frag == fmt.NO_FRAGMENT or frag in reused:
                count += 1
        return count

    def close(self) -> None:
        """Release the directory descriptors (also after an error)."""
        self._files.close()
        self._earlier.close()


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
