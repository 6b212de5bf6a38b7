"""Blocks -> compressed blocks on disk, in order ("Data and Fragment Blocks" in doc/format.adoc).

N threads (N = processors) compress blocks in small batches; the calling thread, which reads the
files, writes the results strictly in submission order (a FIFO of pending batches), so the image
does not depend on how many threads ran or how they were scheduled. The FIFO holds at most
BACKLOG_BYTES of blocks (and always IN_FLIGHT batches per thread), so memory stays flat however
large the tree is. A block that does not shrink is stored raw (bit 24 of its size word).

The backlog lets the caller go on to other work while the threads finish: the image writer builds
the inode table while the last BACKLOG_BYTES are compressed, instead of leaving CPUs idle.

Threads, not processes: every codec the writer has releases the GIL while it compresses
(compression.py, measured by benchmarks/gil.py), so N threads compress N blocks at once, and no
block is pickled and sent through a pipe and back.  Worker processes cost the packer about a
quarter of its own CPU time in pipe reads and writes on 100k small files
(benchmarks/results/writer-profile.md), and their memory came on top of the packer's.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from condainer.errors import ImageError
from condainer.fs import format as fmt
from condainer.fs.compression import Codec

BATCH_BYTES = 256 * 1024  # bytes of blocks handed to a thread at once
BATCH_ITEMS = 64  # blocks and marks per batch (small blocks, or many files' start marks)
IN_FLIGHT = 4  # batches per thread that may always be queued, being compressed, or waiting to be written
# Beyond that, blocks up to this many bytes may wait. When the feeding thread runs ahead of the
# compression threads, this is the compression left to do once it is done: at zstd 6 about a quarter
# of a second per thread here, which is what the inode table takes to build (image.py, step 4).
BACKLOG_BYTES = 32 << 20
# Compression threads run this much nicer than the thread that feeds them. With as many compression
# threads as CPUs, the feeding thread (it lists the tree, reads and hashes the files and packs the
# fragments) would get a fair share of a CPU like any of them, and everything waits for it: on 100k
# small files it is the slowest stage. Nicer threads still use every CPU left idle. Where the kernel
# shares CPUs between sessions (autogroup) or cgroups, the nice value only orders them against other
# tasks of the same group, such as the user's own other work (benchmarks/results/writer-profile.md).
COMPRESSION_NICENESS = 10


class Placed:
    """Something told where its pieces landed: ``placed(index, position, size_word)``, and which of
    them were copied from an old image instead of compressed (``copied(index)``, before placed)."""

    def placed(self, index: int, position: int, word: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def copied(self, index: int) -> None:
        """Piece ``index`` is an old image's compressed block, copied as it was."""


# A verifier (reuse.OldImage.verifier makes them, one per thread): (block, old position, old size
# word) -> the old compressed bytes when they decompress to exactly ``block``, else None.
Verify = Callable[[bytes, int, int], "bytes | None"]


class _Batch:
    """Blocks and marks in submission order; ``done`` is released once ``results`` are in."""

    __slots__ = ("entries", "nbytes", "results", "error", "done", "seconds", "compressed")

    def __init__(self, entries: list[tuple[bytes | tuple | None, Placed, int]], nbytes: int) -> None:
        # (block, or (block, ((old position, old size word), ...)) for a candidate, or None for a
        # mark; target; index)
        self.entries = entries
        self.nbytes = nbytes  # of the blocks
        # per entry: (bytes to write, size word, bytes of the block if copied from the old image)
        self.results: list[tuple[bytes | None, int, int]] = []
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()
        self.seconds = 0.0  # spent compressing, when some blocks were copied (the saving is estimated from it)
        self.compressed = 0  # bytes compressed in that time


def _compress(
    batch: _Batch,
    compress: Callable[[bytes], bytes] | None,
    stop: threading.Event,
    verify: Verify | None = None,
    sample: list[bool] | None = None,
) -> None:
    """Fill in ``batch.results``; COMPRESS None stores every block raw.  A candidate is copied
    from the first of its old places whose bytes VERIFY finds decompress to exactly the block,
    else compressed like any block: the outcome depends on content only, never on threads or
    timing. While re-packing, compressing is timed (the copies' saving is estimated from it), and
    SAMPLE[0] has the thread also compress its first copied block once, for a re-pack that copies
    everything. Gives up between two blocks once STOP is set, so an abort waits for one block, not
    a whole batch."""
    results = batch.results
    for block, _, _ in batch.entries:
        if block is None:
            results.append((None, 0, 0))
            continue
        if stop.is_set():
            return
        if block.__class__ is tuple:
            block, candidates = block
            for position, word in candidates if verify is not None else ():
                old = verify(block, position, word)
                if old is not None:
                    results.append((old, word, len(block)))
                    break
            else:
                old = None
            if old is not None:
                if sample and sample[0]:  # what compressing it would have cost, once per thread
                    sample[0] = False
                    started = time.perf_counter()
                    compress(block)
                    batch.seconds += time.perf_counter() - started
                    batch.compressed += len(block)
                continue
        if verify is None:
            packed = compress(block) if compress is not None else block
        else:  # re-packing: what compressing costs here tells what the copies saved
            started = time.perf_counter()
            packed = compress(block)
            batch.seconds += time.perf_counter() - started
            batch.compressed += len(block)
        if compress is None or len(packed) >= len(block):
            results.append((block, len(block) | fmt.DATA_UNCOMPRESSED, 0))
        else:
            results.append((packed, len(packed), 0))


class BlockPipeline:
    """Compress blocks in parallel, write them in submission order, report each block's place."""

    def __init__(
        self, out: BinaryIO, position: int, codec: Codec, processors: int, verifiers: Callable[[], Verify] | None = None
    ) -> None:
        """``verifiers``: makes a Verify for each compression thread, which add_candidate's blocks are
        checked with (an old image's, reuse.OldImage.verifier); None when there is no old image (or
        nothing to compress)."""
        self._out = out
        self.position = position
        self._verifiers = verifiers if not codec.raw else None
        self._batch: list[tuple[bytes | tuple | None, Placed, int]] = []
        self._batch_bytes = 0
        self._pending: collections.deque[_Batch] = collections.deque()
        self._pending_bytes = 0
        self._min_batches = IN_FLIGHT * processors
        self._max_batches = max(self._min_batches, BACKLOG_BYTES // BATCH_BYTES)
        self._inbox: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # What copying instead of compressing gave: blocks, their bytes; and what compressing
        # the others cost (seconds of the compression threads, bytes compressed).
        self.copied_blocks = self.copied_bytes = 0
        self.compress_seconds, self.compressed_bytes = 0.0, 0
        if codec.raw:
            return  # nothing to compress: batches are written as they fill
        try:
            for i in range(processors):
                self._start_thread(codec, f"compression thread {i + 1} of {processors}")
        except BaseException:
            self.close()
            raise

    def _start_thread(self, codec: Codec, what: str) -> None:
        # One compressor per thread (a python-zstandard compressor is not thread-safe), built here
        # so that a failure is the caller's. Daemon: the interpreter never waits for one at exit,
        # even if close() was interrupted before it could join.
        verify = self._verifiers() if self._verifiers is not None else None
        thread = threading.Thread(target=self._run, args=(codec.compressor(), verify), name="compress", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": out of memory, or a limit on tasks
            raise ImageError(f"cannot start {what}: {exc}") from exc
        self._threads.append(thread)

    def _run(self, compress: Callable[[bytes], bytes], verify: Verify | None) -> None:
        """A compression thread: batches off the inbox until None; after close(), skip them."""
        with contextlib.suppress(OSError):
            os.nice(COMPRESSION_NICENESS)  # this thread only: on Linux the nice value is per thread
        sample = [True]  # a re-pack that copies everything still learns what compressing costs
        while (batch := self._inbox.get()) is not None:
            if not self._stop.is_set():
                try:
                    _compress(batch, compress, self._stop, verify, sample)
                except BaseException as exc:  # e.g. MemoryError: raised again by the writing thread
                    batch.error = exc
            batch.done.release()

    def add(self, block: bytes, target: Placed, index: int) -> None:
        """Queue a block; ``target.placed(index, pos, word)`` runs when it is written."""
        self._batch.append((block, target, index))
        self._batch_bytes += len(block)
        if self._batch_bytes >= BATCH_BYTES or len(self._batch) >= BATCH_ITEMS:
            self._flush_batch()

    def add_candidate(self, block: bytes, old: tuple[tuple[int, int], ...], target: Placed, index: int) -> None:
        """Queue a block that may be one of the old image's blocks at ``old`` ((position, size
        word), ...; tried in this order): a compression thread copies the old bytes that
        decompress to exactly ``block``, else compresses it (``target.copied(index)`` says which,
        before ``placed``)."""
        if self._verifiers is None:
            self.add(block, target, index)
            return
        self._batch.append(((block, old), target, index))
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
        batch = _Batch(self._batch, self._batch_bytes)
        self._batch = []
        self._batch_bytes = 0
        if not self._threads:
            _compress(batch, None, self._stop)
            self._write(batch)
            return
        while self._backlog_full():
            self._write_oldest()
        self._pending.append(batch)
        self._pending_bytes += batch.nbytes
        self._inbox.put(batch)

    def _backlog_full(self) -> bool:
        pending = len(self._pending)
        return pending >= self._max_batches or (
            pending >= self._min_batches and self._pending_bytes >= BACKLOG_BYTES
        )

    def _write_oldest(self) -> None:
        batch = self._pending.popleft()
        self._pending_bytes -= batch.nbytes
        batch.done.acquire()  # a signal still interrupts the wait (KeyboardInterrupt)
        if batch.error is not None:
            raise batch.error
        self._write(batch)

    def _write(self, batch: _Batch) -> None:
        write, position = self._out.write, self.position
        if batch.compressed:
            self.compress_seconds += batch.seconds
            self.compressed_bytes += batch.compressed
        for (_, target, index), (data, word, copied) in zip(batch.entries, batch.results, strict=True):
            if copied:
                self.copied_blocks += 1
                self.copied_bytes += copied
                target.copied(index)
            target.placed(index, position, word)
            if data is not None:
                write(data)
                position += len(data)
        self.position = position

    def write_until(self, done: Callable[[], bool]) -> None:
        """Write queued blocks, oldest first, until ``done()`` holds: e.g. until the last block of
        a file has been placed. The threads go on compressing the rest."""
        self._flush_batch()
        while not done():
            if not self._pending:
                raise RuntimeError("write_until: nothing queued can make it true")
            self._write_oldest()

    def finish(self) -> int:
        """Write everything still queued, stop the threads; return the end position."""
        self._flush_batch()
        while self._pending:
            self._write_oldest()
        self.close()
        return self.position

    def close(self) -> None:
        """Stop the threads (the error path: nothing queued is kept).  Threads cannot be killed:
        queued batches are skipped, and one being compressed ends after its current block."""
        self._stop.set()
        for _ in self._threads:
            self._inbox.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []
        self._pending.clear()
        self._pending_bytes = 0
