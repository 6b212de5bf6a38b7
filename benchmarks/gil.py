#!/usr/bin/env python3
"""Does each codec's compress function release the GIL?  Measured, not assumed.

The Python writer compresses blocks in threads (condainer/fs/writer/pipeline.py), which only run
in parallel if the codec's compress call lets go of the GIL.  Two measurements per codec, each
thread with its own compressor as in the writer:

- stall: one compress call on a few MB runs in a second thread while this thread counts in a
  Python loop.  A call that holds the GIL stops the loop for its whole length (stall / call near
  1); one that releases it stops the loop for a scheduler slice at most.  Robust on a busy machine.
- ratio: wall time of the same 128 KiB blocks split between two threads against one thread.  Near
  0.5 when the calls run at once, near 1 when they take turns; meaningful only with 2 idle CPUs.

Controls: ``bytes.upper`` (C code that keeps the GIL) and ``hashlib.sha256`` (C code that lets it
go) for the stall, a pure Python loop for the ratio.

  python -m benchmarks.gil [--blocks 256] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import threading
import time

from condainer.fs.compression import REGISTRY, Codec

BLOCK = 128 * 1024
CASES = [("gzip", 9), ("gzip", 1), ("zstd", 6), ("zstd", 19), ("xz", None), ("lz4", None), ("lz4", 9)]


def text_blocks(count: int) -> list[bytes]:
    """Compressible text-like blocks, different from each other."""
    rng = random.Random(1)
    words = [
        bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 12)))
        for _ in range(4000)
    ]
    out = []
    for _ in range(count):
        chunks, n = [], 0
        while n < BLOCK:
            w = rng.choice(words)
            chunks.append(w)
            n += len(w) + 1
        out.append(b" ".join(chunks)[:BLOCK])
    return out


def python_loop(block: bytes) -> bytes:
    total = 0
    for byte in block[:8192]:
        total += byte
    return total.to_bytes(8, "little")


def stall(compress, data: bytes) -> tuple[float, float]:
    """(seconds of one compress call in another thread, longest pause of this thread meanwhile)."""
    done = threading.Event()
    times = []

    def run() -> None:
        start = time.perf_counter()
        compress(data)
        times.append(time.perf_counter() - start)
        done.set()

    thread = threading.Thread(target=run)
    longest, last = 0.0, time.perf_counter()
    thread.start()
    while not done.is_set():
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
    thread.join()
    return times[0], longest


def sized_input(compress, blocks: list[bytes]) -> bytes:
    """The first of the blocks, end to end, for one call of about 0.3 s (all of them at most)."""
    data = b"".join(blocks)
    start = time.perf_counter()
    compress(data[: 8 * BLOCK])
    per_byte = (time.perf_counter() - start) / (8 * BLOCK)
    return data[: max(8 * BLOCK, int(0.3 / max(per_byte, 1e-12)))]


def ratio(make, blocks: list[bytes], runs: int) -> float:
    """Median wall time of the blocks split between two threads over the same on one thread."""

    def run(part: list[bytes]) -> None:
        compress = make()
        for block in part:
            compress(block)

    one, two = [], []
    for _ in range(runs):  # interleaved
        start = time.perf_counter()
        run(blocks)
        one.append(time.perf_counter() - start)
        threads = [threading.Thread(target=run, args=(blocks[i::2],)) for i in range(2)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        two.append(time.perf_counter() - start)
    return statistics.median(two) / statistics.median(one)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=256)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    blocks = text_blocks(args.blocks)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    print(f"{'compress':<16} {'input MB':>8} {'call s':>7} {'stall s':>7} {'stall/call':>10} {'ratio':>6}")
    cases = [
        (f"{n} {lvl if lvl is not None else '-'}", lambda n=n, lvl=lvl: Codec(n, lvl, BLOCK).compressor())
        for n, lvl in CASES
        if REGISTRY[n].writable
    ]
    cases += [
        ("bytes.upper", lambda: bytes.upper),
        ("sha256", lambda: lambda d: hashlib.sha256(d).digest()),
        ("python loop", lambda: python_loop),
    ]
    for label, make in cases:
        try:
            compress = make()
        except ImportError as exc:
            print(f"{label:<16} not installed ({exc.name})")
            continue
        cells = ["", "", "", ""]
        if label != "python loop":
            data = sized_input(compress, blocks)
            results = [stall(compress, data) for _ in range(args.runs)]
            call = statistics.median(r[0] for r in results)
            longest = statistics.median(r[1] for r in results)
            cells = [f"{len(data) / 1e6:.0f}", f"{call:.3f}", f"{longest:.3f}", f"{longest / call:.2f}"]
        shown = f"{ratio(make, blocks, args.runs):.2f}" if label not in ("bytes.upper", "sha256") else ""
        print(f"{label:<16} {cells[0]:>8} {cells[1]:>7} {cells[2]:>7} {cells[3]:>10} {shown:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
