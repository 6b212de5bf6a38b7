"""The ordered compression pipeline on its own: same bytes whatever the thread count, bounded
memory, errors raised in the caller, and a prompt stop that leaves no thread behind."""

from __future__ import annotations

import io
import os
import random
import threading
import time

import pytest

from condainer.errors import ImageError
from condainer.fs import format as fmt
from condainer.fs.compression import make_codec
from condainer.fs.writer import pipeline
from condainer.fs.writer.pipeline import BlockPipeline, Placed


class Record(Placed):
    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []

    def placed(self, index: int, position: int, word: int) -> None:
        self.calls.append((index, position, word))


def stream(rnd: random.Random, count: int) -> list[bytes | None]:
    """Blocks of mixed sizes, compressible and not, with marks (None) in between."""
    items: list[bytes | None] = []
    for _ in range(count):
        kind = rnd.random()
        if kind < 0.15:
            items.append(None)
        elif kind < 0.4:
            items.append(rnd.randbytes(rnd.randint(1, 8192)))  # does not shrink: stored raw
        else:
            items.append(bytes(rnd.choice(b"ab ") for _ in range(rnd.randint(1, 8192))))
    return items


def run(items, codec, processors: int, after_item=None) -> tuple[bytes, list, int]:
    """Feed ``items`` (None: a mark); ``after_item(i, pipe, record, out)`` runs after each one."""
    out = io.BytesIO()
    pipe = BlockPipeline(out, 96, codec, processors)
    record = Record()
    try:
        for i, block in enumerate(items):
            if block is None:
                pipe.mark(record, i)
            else:
                pipe.add(block, record, i)
            if after_item:
                after_item(i, pipe, record, out)
        end = pipe.finish()
    finally:
        pipe.close()
    return out.getvalue(), record.calls, end


def compress_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "compress"]


@pytest.mark.parametrize("comp", ["zstd", "gzip", "none"])
def test_same_bytes_and_places_whatever_the_thread_count(comp, monkeypatch):
    monkeypatch.setattr(pipeline, "BATCH_ITEMS", 5)  # many batches, so threads overtake each other
    items = stream(random.Random(7), 400)
    codec = make_codec(comp, None, 8192)
    reference = run(items, codec, 1)
    data, calls, end = reference
    assert end == 96 + len(data) and [c[0] for c in calls] == list(range(len(items)))
    raw = [c for c, b in zip(calls, items, strict=True) if b is not None and c[2] & fmt.DATA_UNCOMPRESSED]
    assert raw and (comp == "none" or len(raw) < len(calls) - 100)
    for processors in (2, 3, 5):
        assert run(items, codec, processors) == reference
    assert compress_threads() == []


def slow_codec(monkeypatch, delay: float):
    codec = make_codec("zstd", 1, 8192)
    real = codec.compressor

    def compressor():
        compress = real()

        def slow(block: bytes) -> bytes:
            time.sleep(delay)  # as a codec in C would: without the GIL
            return compress(block)

        return slow

    monkeypatch.setattr(type(codec), "compressor", lambda self: compressor())
    return codec


def most_queued(monkeypatch, backlog: int, processors: int, blocks) -> tuple[int, int]:
    """Feed ``blocks`` to slow threads under BACKLOG_BYTES = ``backlog``; the most batches and
    block bytes that were ever queued at once."""
    monkeypatch.setattr(pipeline, "BACKLOG_BYTES", backlog)
    pipe = BlockPipeline(io.BytesIO(), 0, slow_codec(monkeypatch, 0.001), processors)
    most = most_bytes = 0
    try:
        for i, block in enumerate(blocks):
            pipe.add(block, Record(), i)
            most = max(most, len(pipe._pending))
            most_bytes = max(most_bytes, sum(b.nbytes for b in pipe._pending))
        pipe.finish()
    finally:
        pipe.close()
    return most, most_bytes


def small_blocks():
    return (os.urandom(64) * 16 for _ in range(3000))  # 1 KiB: a batch is BATCH_ITEMS of them


def test_the_backlog_is_bounded_in_batches(monkeypatch):
    most, most_bytes = most_queued(monkeypatch, 16 * pipeline.BATCH_BYTES, 2, small_blocks())
    assert most == 16  # small blocks: the batch count is the bound
    assert most_bytes == 16 * pipeline.BATCH_ITEMS * 1024


def test_the_backlog_is_bounded_in_bytes(monkeypatch):
    big = os.urandom(1024) * 200  # two to a batch: 400 KiB
    most, most_bytes = most_queued(monkeypatch, 16 * pipeline.BATCH_BYTES, 2, (big for _ in range(200)))
    assert most_bytes == 11 * 2 * len(big)  # the first count at or above BACKLOG_BYTES
    assert most == 11


def test_each_thread_always_has_batches_in_flight(monkeypatch):
    most, _ = most_queued(monkeypatch, pipeline.BATCH_BYTES, 3, small_blocks())  # less than that floor
    assert most == pipeline.IN_FLIGHT * 3


def test_write_until_writes_in_order_up_to_what_is_asked(monkeypatch):
    monkeypatch.setattr(pipeline, "BATCH_ITEMS", 5)
    items = stream(random.Random(11), 300)
    codec = make_codec("zstd", None, 8192)
    reference = run(items, codec, 1)

    def write_until(i, pipe, record, out):
        if i == 200:
            pipe.write_until(lambda: len(record.calls) > 123)
            assert [c[0] for c in record.calls] == list(range(len(record.calls)))  # in order
            assert len(record.calls) < 130  # up to the batch holding the one asked for
            assert out.getvalue() == reference[0][: len(out.getvalue())]
        elif i == len(items) - 1:
            pipe.write_until(lambda: len(record.calls) == len(items))  # the last one, not yet in a batch
            with pytest.raises(RuntimeError, match="nothing queued"):
                pipe.write_until(lambda: False)

    assert run(items, codec, 2, write_until) == reference
    assert compress_threads() == []


def test_close_drops_queued_batches_and_returns_after_one_block(monkeypatch):
    codec = slow_codec(monkeypatch, 0.2)
    pipe = BlockPipeline(io.BytesIO(), 0, codec, 2)
    for i in range(2 * pipeline.IN_FLIGHT * pipeline.BATCH_ITEMS):  # fills every batch in flight
        pipe.add(b"x" * 100, Record(), i)
    assert len(compress_threads()) == 2
    started = time.monotonic()
    pipe.close()  # what an interrupted pack does: queued work would take minutes
    assert time.monotonic() - started < 1.0
    assert compress_threads() == []


def test_a_thread_that_cannot_start_is_a_one_line_error(monkeypatch):
    real_start = threading.Thread.start
    started = []

    def start(self):
        if started:
            raise RuntimeError("can't start new thread")
        started.append(self)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    with pytest.raises(ImageError) as info:
        BlockPipeline(io.BytesIO(), 0, make_codec("zstd", 1, 8192), 3)
    assert info.value.message == "cannot start compression thread 2 of 3: can't start new thread"
    monkeypatch.undo()
    started[0].join(timeout=5)
    assert compress_threads() == []  # the one that did start was stopped


def test_an_error_in_a_compression_thread_is_raised_by_the_writer(monkeypatch):
    codec = make_codec("zstd", 1, 8192)

    def broken(self):
        def compress(block: bytes) -> bytes:
            raise MemoryError

        return compress

    monkeypatch.setattr(type(codec), "compressor", broken)
    pipe = BlockPipeline(io.BytesIO(), 0, codec, 2)
    try:
        pipe.add(b"x" * 100, Record(), 0)
        with pytest.raises(MemoryError):
            pipe.finish()
    finally:
        pipe.close()
    assert compress_threads() == []


def test_compression_threads_are_nicer_than_the_thread_that_feeds_them(monkeypatch):
    """Else, with as many compression threads as CPUs, the feeding thread gets a CPU share like any
    of them and every thread waits for it."""
    codec = make_codec("zstd", 3, 4096)
    real = type(codec).compressor
    seen: set[int] = set()

    def compressor(self):
        compress = real(self)

        def recording(block: bytes) -> bytes:
            seen.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return compress(block)

        return recording

    monkeypatch.setattr(type(codec), "compressor", compressor)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    run(stream(random.Random(3), 200), codec, 2)
    assert seen == {min(mine + pipeline.COMPRESSION_NICENESS, 19)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # the caller is unchanged
