#!/usr/bin/env python3
"""zstd level table: image size and pack time of the Python writer per level, on a real-ish venv.

Writes benchmarks/results/level-table.md (quoted by README when choosing the default level).

  python benchmarks/levels.py [--corpus DIR] [--levels 1,3,6,9,12,15,19] [--processors N] [--runs 1]
Default corpus: a venv with numpy built under benchmarks/.cache/ (pip).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("CONDAINER_BENCH_CACHE", str(HERE / ".cache"))

from benchmarks import corpus  # noqa: E402
from benchmarks.pack import tree_stats  # noqa: E402
from condainer.fs.options import PackOptions  # noqa: E402
from condainer.fs.writer import pack_tree  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path)
    p.add_argument("--levels", default="1,3,6,9,12,15,19")
    p.add_argument("--processors", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "results" / "level-table.md")
    args = p.parse_args(argv)
    corpus_dir = args.corpus or corpus.python_env(quick=True)  # a venv with numpy
    files, size = tree_stats(corpus_dir)
    image = HERE / ".cache" / "level.sqfs"
    rows = []
    for level in [int(x) for x in args.levels.split(",")]:
        times = []
        for _ in range(args.runs):
            stats = pack_tree(
                corpus_dir,
                image,
                PackOptions(compression="zstd", level=level, processors=args.processors, progress=False),
            )
            times.append(stats.seconds)
        t = time.monotonic()
        subprocess.run(["unsquashfs", "-no-progress", "-lls", str(image)], capture_output=True, check=True)
        rows.append((level, statistics.median(times), stats.image_size))
        print(
            f"zstd {level:2d}: {rows[-1][1]:7.2f} s {stats.image_size:>12,d} B "
            f"({stats.image_size / size:.3f}; listing check {time.monotonic() - t:.2f} s)",
            flush=True,
        )
    base = next((r for r in rows if r[0] == 15), rows[-1])
    lines = [
        "# zstd level: size and time of the Python writer",
        "",
        f"Corpus: `{corpus_dir.name}` ({files:,} files, {size / 1e6:.0f} MB); {args.processors} processors, "
        f"block 128 KiB, median of {args.runs} run(s), warm page cache; {platform.node()}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}. A shared 2-core machine: times are indicative.",
        "",
        "| level | pack s | image bytes | ratio to input | size vs level 15 | time vs level 15 |",
        "|---|---|---|---|---|---|",
    ]
    for level, secs, nbytes in rows:
        lines.append(
            f"| {level} | {secs:.2f} | {nbytes:,} | {nbytes / size:.3f} | {nbytes / base[2]:.3f} "
            f"| {secs / base[1]:.2f} |"
        )
    lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # The hand-written recommendation below the table survives a re-run.
    keep = ""
    if args.out.exists() and "\n## Recommendation" in args.out.read_text():
        keep = args.out.read_text()[args.out.read_text().index("\n## Recommendation") :]
    args.out.write_text("\n".join(lines) + keep)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
