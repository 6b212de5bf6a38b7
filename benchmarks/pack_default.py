"""Pack at the default level: where the writer's own per-file work decides the time (issue 17).

At zstd 6 compression is cheap, so trees of many small files measure what the packer does per file
(scan, open, read, hash, inodes) and what memory it keeps per file. Rows, each interleaved (python,
mksquashfs, then the other way round) with the same level, block size and processors:

- trees of small files (0-6 KiB) with 2k, 10k, 100k and 1M files, all processors (the scaling plot);
- 100k small files on one processor (a login node's one-core cgroup);
- the venv corpus at zstd 6 and at zstd 15.

Peak RSS is GNU time's %M of the packer: one process for both packers (the Python writer compresses in
threads, mksquashfs too).

  python -m benchmarks default [--quick] [--repeats N]
"""

from __future__ import annotations

from benchmarks import corpus
from benchmarks.common import cache_root, median, progress, table
from benchmarks.pack import Settings, pack_both, warm_page_cache


def _rows(quick: bool) -> list[tuple[str, str, object, Settings]]:
    """(label, corpus kind, corpus argument, settings) per row."""
    counts = [1_000, 4_000] if quick else [2_000, 10_000, 100_000, 1_000_000]
    rows = [(f"{n:,} small files", "small", n, Settings(level=6)) for n in counts]
    rows.append((f"{counts[-2]:,} small files, 1 processor", "small", counts[-2], Settings(level=6, processors=1)))
    rows.append(("venv (numpy, scipy, pandas, matplotlib, sympy)", "venv", quick, Settings(level=6)))
    if not quick:
        rows.append(("venv, zstd 15", "venv", quick, Settings(level=15)))
    return rows


def run(quick: bool, repeats: int, backends: list[str]) -> str:
    """Entry point of `python -m benchmarks default`."""
    from benchmarks import plots

    if "python" not in backends:
        return "## pack at the default level\n\nPython writer not available.\n"
    images = cache_root() / "pack-images"
    images.mkdir(exist_ok=True)
    lines, points = [], []
    for label, kind, arg, s in _rows(quick):
        src = corpus.small_files(arg) if kind == "small" else corpus.python_env(arg)
        warm_page_cache(src)  # else the first packer pays for reading a tree evicted by earlier corpora
        res = pack_both(src, images / "default", s, repeats)
        t_py, t_nat = median([r[0] for r in res["python"]]), median([r[0] for r in res["native"]])
        rss_py, rss_nat = (max(r[1] for r in res[who]) / 2**20 for who in ("python", "native"))
        size = res["python"][-1][2] / res["native"][-1][2]
        progress(f"default level, {label}: python {t_py:.2f} s, mksquashfs {t_nat:.2f} s")
        lines.append([label, f"zstd {s.level}", s.processors, f"{t_py:.2f}", f"{t_nat:.2f}", f"{t_py / t_nat:.2f}",
                      f"{t_py - t_nat:+.2f}", f"{rss_py:.0f}", f"{rss_nat:.0f}", f"{size:.4f}", repeats])
        if kind == "small" and s.processors == Settings().processors:
            points.append({"files": arg, "python_s": t_py, "native_s": t_nat})
    png = plots.pack_scaling(points)
    return "\n".join([
        "## pack at the default level: trees of small files, and the venv",
        "",
        f"Block 128 KiB; median of {repeats} interleaved runs per row; peak RSS: the largest of the runs.",
        "",
        table(["tree", "level", "processors", "python s", "mksquashfs s", "time ratio", "difference s",
               "python RSS MiB", "mksquashfs RSS MiB", "size ratio", "runs"], lines),
        "",
        f"![pack time against tree size]({png.name})",
        "",
    ])
