"""Blocks -> compressed blocks on disk, in order ("Data and Fragment Blocks" in doc/format.adoc).

Blocks are compressed in worker processes in bounded batches and written strictly in submission
order (a FIFO of pending batches), so the image does not depend on how many processes ran or how
they were scheduled, and memory stays flat however large the tree is.  A block that does not shrink
is stored raw (bit 24 of its size word).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Callable

from condainer.fs import format as fmt
from condainer.fs.compression import Codec
from condainer.sysinfo import die_with_parent

BATCH_BYTES = 1 << 20  # bytes of blocks sent to a worker at once: amortises the pickling round trip
BATCH_ITEMS = 256
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
        # One process compressing: in a thread, so that reading and hashing the next files overlaps
        # the compression of the last batch (the codecs release the GIL while they compress), as
        # mksquashfs -processors 1 overlaps its reader with its one compressor thread.
        self._thread = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="compress")
            if self._workers is None and not self._raw
            else None
        )

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
        if self._thread is not None:
            while len(self._pending) >= IN_FLIGHT:
                self._write_oldest()
            future = self._thread.submit(_compress_blocks, blocks, self._compress, self._raw)
            self._pending.append((self._seq, future, self._batch))
        elif self._workers is None:
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
        if self._workers is None and self._thread is None:
            self._write_oldest()

    def _write_oldest(self) -> None:
        seq, result, entries = self._pending.popleft()
        if isinstance(result, concurrent.futures.Future):
            result = result.result()
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
        self._stop_thread()
        return self.position

    def close(self) -> None:
        """Stop the workers at once (the error path: nothing queued is kept)."""
        if self._workers is not None:
            self._workers.kill()
            self._workers = None
        self._stop_thread()

    def _stop_thread(self) -> None:
        """Let the compression thread end: queued batches are dropped, the running one (at most
        BATCH_BYTES) finishes first."""
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=True)
            self._thread = None


