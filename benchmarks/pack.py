#!/usr/bin/env python3
"""Pack benchmark: condainer's Python squashfs writer vs mksquashfs, same trees, same settings.

Not a test: run it on a quiet machine. Corpora come from benchmarks/corpus.py and are cached (run as a
script: benchmarks/.cache/ unless CONDAINER_BENCH_CACHE says otherwise):
  venv   a virtualenv with numpy scipy pandas matplotlib sympy from PyPI (quick: numpy only)
  small  a synthetic tree of small files (0-6 KiB, text-like, some duplicates); 100k (quick: 2k)
  large  a few large files, half compressible, half random; 3 x 1 GiB (quick: 2 x 32 MiB)
Runs are interleaved (python then native, native then python, ...); the median of N is reported with
time ratio, size ratio (superblock bytes_used, i.e. without padding) and the peak RSS of each packer
(largest process, workers included) into benchmarks/results/pack.md.

  python benchmarks/pack.py --quick            # small corpora, 1 run: checks that it works
  python benchmarks/pack.py --runs 5           # the real measurement
  python -m benchmarks pack [--quick]          # the same, as a suite of the benchmark frame
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import corpus  # noqa: E402
from benchmarks.common import cache_root, median, progress, run_timed, table  # noqa: E402

PY_PACK = r"""
import sys
from condainer.fs.options import PackOptions
from condainer.fs.writer import pack_tree
src, image, comp, level, bs, procs = sys.argv[1:]
pack_tree(src, image, PackOptions(compression=comp, level=int(level), block_size=int(bs),
                                  processors=int(procs), progress=False))
"""


class Settings:
    def __init__(self, compression="zstd", level=15, block_size=128 * 1024, processors=None) -> None:
        self.compression = compression
        self.level = level
        self.block_size = block_size
        self.processors = processors or len(os.sched_getaffinity(0))


def bytes_used(image: Path) -> int:
    """The superblock's bytes_used: the image without its 4 KiB padding (finer than the file size)."""
    with open(image, "rb") as f:
        return int.from_bytes(f.read(48)[40:48], "little")


def python_cmd(src: Path, image: Path, s: Settings) -> list[str]:
    return [
        sys.executable,
        "-c",
        PY_PACK,
        str(src),
        str(image),
        s.compression,
        str(s.level),
        str(s.block_size),
        str(s.processors),
    ]


def native_cmd(src: Path, image: Path, s: Settings) -> list[str]:
    cmd = [
        "mksquashfs",
        str(src),
        str(image),
        "-noappend",
        "-no-progress",
        "-quiet",
        "-comp",
        s.compression,
        "-b",
        str(s.block_size),
        "-processors",
        str(s.processors),
    ]
    if s.compression in ("zstd", "gzip"):
        cmd += ["-Xcompression-level", str(s.level)]
    return cmd


def pack_once(who: str, src: Path, image: Path, s: Settings) -> tuple[float, int, int]:
    cmd = python_cmd(src, image, s) if who == "python" else native_cmd(src, image, s)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    seconds, rss, result = run_timed(cmd, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{who} pack failed: {result.stderr.strip()}")
    return seconds, rss, bytes_used(image)


def pack_both(src: Path, stem: Path, s: Settings, repeats: int) -> dict[str, list[tuple[float, int, int]]]:
    """REPEATS runs of each packer on SRC, interleaved (python first, then native first, ...): per
    packer its (seconds, peak RSS, bytes used) runs. Images go to STEM-python.sqfs, STEM-native.sqfs."""
    res: dict[str, list[tuple[float, int, int]]] = {"python": [], "native": []}
    for run_no in range(repeats):
        for who in ("python", "native") if run_no % 2 == 0 else ("native", "python"):
            res[who].append(pack_once(who, src, stem.with_name(f"{stem.name}-{who}.sqfs"), s))
    return res


def tree_stats(path: Path) -> tuple[int, int]:
    files = size = 0
    for root, _, names in os.walk(path):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(root, name)).st_size
    return files, size


def build_corpora(
    names: list[str], quick: bool, small: int | None = None, large: tuple | None = None
) -> dict:
    builders = {
        "venv": lambda: corpus.python_env(quick=quick),
        "small": lambda: corpus.small_files(small or (2000 if quick else 100_000)),
        "large": lambda: corpus.large_files(*(large or ((2, 32 << 20) if quick else (3, 1 << 30)))),
    }
    return {name: builders[name]() for name in names}


def measure(corpora: dict, s: Settings, repeats: int) -> str:
    """Interleaved runs; returns the markdown section."""
    images = cache_root() / "pack-images"
    images.mkdir(exist_ok=True)
    samples = {name: {"python": [], "native": []} for name in corpora}
    # The 3 x 1 GiB corpus takes minutes per pack: one run of it in the full suite (said in the table).
    runs_of = {name: (1 if name == "large" and repeats > 1 and os.environ.get("CONDAINER_BENCH_LARGE_ONCE", "1") == "1"
                      else repeats) for name in corpora}
    for run in range(repeats):
        for name, src in corpora.items():
            if run >= runs_of[name]:
                continue
            for who in ("python", "native") if run % 2 == 0 else ("native", "python"):
                res = pack_once(who, src, images / f"{name}-{who}.sqfs", s)
                samples[name][who].append(res)
                progress(
                    f"run {run + 1}/{repeats} {name} {who}: {res[0]:.2f} s, {res[2]:,} B, "
                    f"{res[1] / 2**20:.0f} MiB RSS"
                )
    rows = []
    for name, src in corpora.items():
        files, size = tree_stats(src)
        py, nat = samples[name]["python"], samples[name]["native"]
        t_py, t_nat = median([r[0] for r in py]), median([r[0] for r in nat])
        s_py, s_nat = py[-1][2], nat[-1][2]
        rows.append(
            [
                f"{name} ({runs_of[name]} run{'s' if runs_of[name] > 1 else ''})",
                f"{files:,}",
                f"{size / 1e6:,.0f}",
                f"{t_py:.2f}",
                f"{t_nat:.2f}",
                f"{t_py / t_nat:.2f}",
                f"{s_py:,}",
                f"{s_nat:,}",
                f"{s_py / s_nat:.4f}",
                f"{max(r[1] for r in py) / 2**20:.0f}",
                f"{max(r[1] for r in nat) / 2**20:.0f}",
            ]
        )
    head = [
        "corpus",
        "files",
        "MB in",
        "python s",
        "mksquashfs s",
        "time ratio",
        "python bytes",
        "mksquashfs bytes",
        "size ratio",
        "python peak RSS MiB",
        "mksquashfs peak RSS MiB",
    ]
    return "\n".join(
        [
            "## pack: Python writer vs mksquashfs",
            "",
            f"{s.compression} level {s.level}, block {s.block_size // 1024} KiB, {s.processors} processors for both; "
            f"median of {repeats} interleaved run(s), warm page cache. Bytes are the superblock's bytes_used. "
            "mksquashfs keeps its defaults otherwise: it packs only files smaller than a block into fragments, "
            "the Python writer also packs the tails of larger files.",
            "",
            table(head, rows),
            "",
            "Targets: time ratio <= 1.2, size ratio <= 1.01, Python peak RSS <= 250 MB.",
            "",
        ]
    )


def warm_page_cache(src) -> None:
    """Read every file of SRC once, untimed: the tables say "warm page cache" for both packers."""
    subprocess.run(f"find {shlex.quote(str(src))} -type f -print0 | xargs -0 cat > /dev/null", shell=True,
                   check=True, executable="/bin/bash")


def variants(quick: bool, repeats: int) -> str:
    """The venv corpus with gzip, and with zstd on one processor."""
    src = corpus.python_env(quick)
    procs = len(os.sched_getaffinity(0))
    rows = []
    images = cache_root() / "pack-images"
    images.mkdir(exist_ok=True)
    level = 3 if quick else 15
    for label, st in (("gzip 9, all processors", Settings("gzip", 9)),
                      (f"zstd {level}, 1 processor", Settings("zstd", level, processors=1))):
        res = pack_both(src, images / "variant", st, repeats)
        t_py, t_nat = median([r[0] for r in res["python"]]), median([r[0] for r in res["native"]])
        progress(f"variant {label}: python {t_py:.1f} s, mksquashfs {t_nat:.1f} s")
        rows.append([label, f"{t_py:.1f}", f"{t_nat:.1f}", f"{t_py / t_nat:.2f}",
                     f"{res['python'][-1][2] / res['native'][-1][2]:.4f}"])
    return "\n".join([
        "## pack variants on the Python env corpus",
        "",
        f"Median of {repeats} interleaved runs each (zstd {level} on {procs} processors: the headline table).",
        "",
        table(["settings", "python s", "mksquashfs s", "time ratio", "size ratio"], rows),
        "",
    ])


def run(quick: bool, repeats: int, backends: list[str]) -> str:
    """Entry point of `python -m benchmarks pack`: headline table and variants (trees of small files at
    the default level: `python -m benchmarks default`)."""
    if "python" not in backends:
        return "## pack\n\nPython writer not available.\n"
    corpora = build_corpora(["venv", "small", "large"], quick)
    parts = [measure(corpora, Settings(level=3 if quick else 15), repeats)]
    if os.environ.get("CONDAINER_BENCH_PACK_HEADLINE_ONLY") != "1":
        parts.append(variants(quick, 1 if repeats > 1 else repeats))
    return "\n".join(parts)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny corpora, zstd 3 and one run: a smoke test")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--corpora", default="venv,small,large")
    p.add_argument("--compression", default="zstd")
    p.add_argument("--level", type=int, default=None, help="default 15 (quick: 3)")
    p.add_argument("--block-size", type=int, default=128 * 1024)
    p.add_argument("--processors", type=int, default=None)
    p.add_argument("--small-files", type=int, default=None)
    p.add_argument("--large-count", type=int, default=None)
    p.add_argument("--large-mib", type=int, default=None)
    p.add_argument("--out", type=Path, default=HERE / "results" / "pack.md")
    args = p.parse_args(argv)
    # Standalone runs cache corpora beside this script; the `python -m benchmarks` frame keeps its own.
    os.environ.setdefault("CONDAINER_BENCH_CACHE", str(HERE / ".cache"))
    runs = 1 if args.quick else args.runs
    level = args.level if args.level is not None else (3 if args.quick else 15)
    large = None
    if args.large_count or args.large_mib:
        large = (args.large_count or 3, (args.large_mib or 1024) << 20)
    corpora = build_corpora(args.corpora.split(","), args.quick, args.small_files, large)
    section = measure(corpora, Settings(args.compression, level, args.block_size, args.processors), runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"Command: `python benchmarks/pack.py {' '.join(sys.argv[1:])}`\n\n{section}")
    print(section)


if __name__ == "__main__":
    main()
