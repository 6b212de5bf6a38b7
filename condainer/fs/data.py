"""File data -> data blocks and fragment blocks ("Data and Fragment Blocks" in doc/format.adoc).

Streaming by design: files are read one block at a time; blocks are compressed in worker processes
in bounded batches and written strictly in submission order (a FIFO of pending batches), so the
image does not depend on how many processes ran or how they were scheduled, and memory stays flat
however large the tree is.

Space savers, as mksquashfs does them: identical files are stored once (files sharing a size are
hashed first, SHA-256), all-zero blocks become sparse holes (size 0, nothing written; blocks in
holes of the source file are not even read), and small files and the tails of large ones are packed
together into fragment blocks.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import multiprocessing
import os
import queue
import signal
import stat
import threading
from array import array
from collections.abc import Callable, Iterable

from condainer.errors import ImageError
from condainer.fs import format as fmt
from condainer.fs.compression import Codec
from condainer.fs.scan import SHORT_PATH, printable, reachable
from condainer.sysinfo import die_with_parent

BATCH_BYTES = 1 << 20  # bytes of blocks sent to a worker at once: amortises the pickling round trip
BATCH_ITEMS = 256
SMALL_FILE_BLOCKS = 8  # files up to this many blocks are read in one go
IN_FLIGHT = 2  # batches queued per worker process


def _worker_main(conn, codec: Codec, parent: int | None, inherited: list[int]) -> None:
    """Compress batches from ``conn`` until it closes or sends None; reply with (data, size word)s.

    A reader thread takes batches off the pipe while the main thread compresses, so the parent's
    send never waits on a worker that is itself waiting to send a result back (no deadlock on full
    pipes), and the next batch is already here when the current one is done.

    A forked worker starts with the parent's ends of its own and earlier workers' pipes (INHERITED):
    it closes them, or it would never see EOF when the parent dies. A parent killed by SIGKILL or
    the OOM killer closes nothing, so the kernel also kills the worker then (die_with_parent).
    """
    die_with_parent(parent)
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    # Ctrl-C and a hangup reach the whole process group, and Slurm sends SIGTERM to every process of
    # a step: only the parent reacts (and reports one line); it SIGKILLs its workers on abort, and
    # the kernel does if it dies.  A worker dying first would make the parent report a crash.
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    compress = codec.compressor()
    raw = codec.raw
    inbox: queue.SimpleQueue = queue.SimpleQueue()

    def receive() -> None:
        while True:
            try:
                blocks = conn.recv()
            except (EOFError, OSError):
                blocks = None
            inbox.put(blocks)
            if blocks is None:
                return

    threading.Thread(target=receive, daemon=True).start()
    while (blocks := inbox.get()) is not None:
        conn.send(_compress_blocks(blocks, compress, raw))


def _compress_blocks(blocks: list[bytes], compress: Callable[[bytes], bytes], raw: bool) -> list[tuple]:
    """(compressed bytes, size word) per block; None instead of bytes where the block is kept raw
    (the parent still holds it, so it need not travel back through the pipe)."""
    out = []
    for block in blocks:
        packed = block if raw else compress(block)
        if raw or len(packed) >= len(block):
            out.append((None, len(block) | fmt.DATA_UNCOMPRESSED))
        else:
            out.append((packed, len(packed)))
    return out


class _Workers:
    """N processes, one private pipe each, batches dealt round-robin.

    Nothing is shared between workers (no queue locks a killed worker could leave held), so abort is
    a plain SIGKILL; results come back per worker in order, so batch ``seq`` is always answered by
    worker ``seq % N``.
    """

    def __init__(self, count: int, codec: Codec) -> None:
        forking = threading.active_count() == 1
        ctx = multiprocessing.get_context("fork" if forking else "forkserver")
        self.count = count
        self._conns = []
        self._procs = []
        try:
            for _ in range(count):
                parent, child = ctx.Pipe()
                # A forkserver's children inherit none of our fds; their parent is the forkserver.
                inherited = [c.fileno() for c in (*self._conns, parent)] if forking else []
                args = (child, codec, os.getpid() if forking else None, inherited)
                proc = ctx.Process(target=_worker_main, args=args, daemon=True)
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
        except BaseException:
            self.kill()
            raise

    def send(self, seq: int, blocks: list[bytes]) -> None:
        self._conns[seq % self.count].send(blocks)

    def receive(self, seq: int) -> list[tuple]:
        try:
            return self._conns[seq % self.count].recv()
        except EOFError:
            raise RuntimeError("a compression worker died") from None

    def stop(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self._procs:
            proc.join()
        self._close_conns()

    def kill(self) -> None:
        for proc in self._procs:
            with contextlib.suppress(OSError):
                proc.kill()
        for proc in self._procs:
            proc.join()
        self._close_conns()

    def _close_conns(self) -> None:
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []


# --- ordered pipeline -------------------------------------------------------------------------


class Placed:
    """Something told where its pieces landed: ``placed(index, position, size_word)``."""

    def placed(self, index: int, position: int, word: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class BlockPipeline:
    """Compress blocks in parallel, write them in submission order, report each block's place."""

    def __init__(self, out, position: int, codec: Codec, processors: int) -> None:
        self._out = out
        self.position = position
        self._raw = codec.raw
        self._compress = codec.compressor()
        self._batch: list[tuple[bytes | None, Placed, int]] = []
        self._batch_bytes = 0
        self._pending: collections.deque = collections.deque()  # (seq, result or None, entries)
        self._seq = 0
        self._workers = _Workers(processors, codec) if processors > 1 and not self._raw else None

    def add(self, block: bytes, target: Placed, index: int) -> None:
        """Queue a block; ``target.placed(index, pos, word)`` runs when it is written."""
        self._batch.append((block, target, index))
        self._batch_bytes += len(block)
        if self._batch_bytes >= BATCH_BYTES or len(self._batch) >= BATCH_ITEMS:
            self._flush_batch()

    def mark(self, target: Placed, index: int) -> None:
        """Report the write position at this point of the stream (e.g. where a file starts)."""
        self._batch.append((None, target, index))
        if len(self._batch) >= BATCH_ITEMS:
            self._flush_batch()

    def _flush_batch(self) -> None:
        if not self._batch:
            return
        blocks = [b for b, _, _ in self._batch if b is not None]
        if self._workers is None:
            self._pending.append(
                (self._seq, _compress_blocks(blocks, self._compress, self._raw), self._batch)
            )
        else:
            # At most IN_FLIGHT batches per worker: bounded memory, and a queue ahead of each worker.
            while self._pending and self._pending[0][0] <= self._seq - IN_FLIGHT * self._workers.count:
                self._write_oldest()
            self._workers.send(self._seq, blocks)
            self._pending.append((self._seq, None, self._batch))
        self._seq += 1
        self._batch = []
        self._batch_bytes = 0
        if self._workers is None:
            self._write_oldest()

    def _write_oldest(self) -> None:
        seq, result, entries = self._pending.popleft()
        results = iter(result if result is not None else self._workers.receive(seq))
        for block, target, index in entries:
            if block is None:
                target.placed(index, self.position, 0)
                continue
            data, word = next(results)
            if data is None:
                data = block
            self._out.write(data)
            target.placed(index, self.position, word)
            self.position += len(data)

    def finish(self) -> int:
        """Write everything still queued, stop the workers; return the end position."""
        self._flush_batch()
        while self._pending:
            self._write_oldest()
        if self._workers is not None:
            self._workers.stop()
            self._workers = None
        return self.position

    def close(self) -> None:
        """Stop the workers at once (the error path: nothing queued is kept)."""
        if self._workers is not None:
            self._workers.kill()
            self._workers = None


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
