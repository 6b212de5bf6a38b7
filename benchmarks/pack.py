#!/usr/bin/env python3
"""Pack benchmark: condainer's Python squashfs writer vs mksquashfs, same trees, same settings.

Not a test: run it on a quiet machine. Corpora are built once and cached under benchmarks/.cache/:
  venv   a virtualenv with numpy scipy pandas matplotlib sympy from PyPI (pip)
  small  a synthetic tree of many small files (0-6 KiB, text-like and binary)
  large  a few large files (random and compressible halves)
Runs are interleaved (python, native, native, python, ...) and the median of N is reported with
time ratio, size ratio and peak RSS of each packer (the largest process; workers included) into
benchmarks/results/pack.md.

  python benchmarks/pack.py --quick            # small corpora, 1 run: checks that it works
  python benchmarks/pack.py --runs 5           # the real measurement
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PACKAGES = ["numpy", "scipy", "pandas", "matplotlib", "sympy"]

# Runs a command and writes "<rc> <wall seconds> <peak RSS KiB of the largest descendant>" to $MEASURE_FD.
MEASURE = r"""
import os, resource, subprocess, sys, time
t = time.monotonic()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
wall = time.monotonic() - t
os.write(int(os.environ["MEASURE_FD"]), f"{rc} {wall} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}".encode())
"""

PY_PACK = r"""
import sys
from condainer.fs.options import PackOptions
from condainer.fs.writer import pack_tree
src, image, comp, level, bs, procs = sys.argv[1:]
pack_tree(src, image, PackOptions(compression=comp, level=int(level), block_size=int(bs),
                                  processors=int(procs), progress=False))
"""


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("B").rstrip("I")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


# --- corpora ----------------------------------------------------------------------------------


def build_venv(path: Path, packages: list[str]) -> Path:
    if (path / ".complete").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    if packages:
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", *packages], check=True)
    (path / ".complete").write_text(" ".join(packages))
    return path


def build_small(path: Path, count: int) -> Path:
    marker = path / ".complete"
    if marker.exists() and marker.read_text() == str(count):
        return path
    shutil.rmtree(path, ignore_errors=True)
    rnd = random.Random(42)
    words = [
        bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randrange(2, 10)))
        for _ in range(2000)
    ]
    for i in range(count):
        d = path / f"d{i // 1000:03d}" / f"s{i // 100 % 10}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        size = rnd.randrange(0, 6 * 1024)
        if i % 4 == 0:
            data = rnd.randbytes(size)
        else:
            data = b" ".join(rnd.choice(words) for _ in range(size // 6 + 1))[:size]
        (d / f"f{i:06d}.txt").write_bytes(data)
    marker.write_text(str(count))
    return path


def build_large(path: Path, count: int, size: int) -> Path:
    marker = path / ".complete"
    if marker.exists() and marker.read_text() == f"{count} {size}":
        return path
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    rnd = random.Random(7)
    text = b"".join(b"%08d some moderately compressible log line\n" % i for i in range(20000))
    for n in range(count):
        with open(path / f"large{n}.bin", "wb") as f:
            written = 0
            while written < size:
                chunk = rnd.randbytes(1 << 20) if rnd.random() < 0.5 else text[: 1 << 20]
                chunk = chunk[: size - written]
                f.write(chunk)
                written += len(chunk)
    marker.write_text(f"{count} {size}")
    return path


# --- measuring --------------------------------------------------------------------------------


def measure(argv: list[str], env: dict) -> tuple[float, int]:
    r, w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", MEASURE, *argv], pass_fds=(w,), env={**env, "MEASURE_FD": str(w)}
    )
    os.close(w)
    proc.wait()
    out = os.read(r, 200).decode().split()
    os.close(r)
    rc, wall, rss = int(out[0]), float(out[1]), int(out[2])
    if rc != 0:
        raise SystemExit(f"failed: {' '.join(argv)}")
    return wall, rss * 1024


def run_python(src: Path, image: Path, args) -> tuple[float, int, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    wall, rss = measure(
        [
            sys.executable,
            "-c",
            PY_PACK,
            str(src),
            str(image),
            args.compression,
            str(args.level),
            str(args.block_size),
            str(args.processors),
        ],
        env,
    )
    return wall, rss, bytes_used(image)


def bytes_used(image: Path) -> int:
    """The superblock's bytes_used: the image without its 4 KiB padding (finer than the file size)."""
    with open(image, "rb") as f:
        return int.from_bytes(f.read(48)[40:48], "little")


def run_native(src: Path, image: Path, args) -> tuple[float, int, int]:
    cmd = [
        "mksquashfs",
        str(src),
        str(image),
        "-noappend",
        "-no-progress",
        "-quiet",
        "-comp",
        args.compression,
        "-b",
        str(args.block_size),
        "-processors",
        str(args.processors),
    ]
    if args.compression == "zstd":
        cmd += ["-Xcompression-level", str(args.level)]
    elif args.compression == "gzip":
        cmd += ["-Xcompression-level", str(args.level)]
    wall, rss = measure(cmd, dict(os.environ))
    return wall, rss, bytes_used(image)


def tree_stats(path: Path) -> tuple[int, int]:
    files = size = 0
    for root, _, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(root, name))
            files += 1
            size += st.st_size
    return files, size


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny corpora and one run: a smoke test")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--corpora", default="venv,small,large")
    p.add_argument("--compression", default="zstd")
    p.add_argument("--level", type=int, default=15)
    p.add_argument("--block-size", type=parse_size, default=128 * 1024)
    p.add_argument("--processors", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--small-files", type=int, default=100_000)
    p.add_argument("--large-count", type=int, default=3)
    p.add_argument("--large-size", type=parse_size, default=1 << 30)
    p.add_argument("--packages", default=",".join(PACKAGES), help="pip packages of the venv corpus")
    p.add_argument("--cache", type=Path, default=HERE / ".cache")
    p.add_argument("--out", type=Path, default=HERE / "results" / "pack.md")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.small_files, args.large_count, args.large_size = 1, 2000, 2, 32 << 20
        args.packages = ""  # a bare venv (pip and setuptools): real files, built in seconds
        args.level = min(args.level, 3) if args.compression == "zstd" else args.level
    if not shutil.which("mksquashfs"):
        raise SystemExit("mksquashfs not found: it is the reference to compare with")
    args.cache.mkdir(parents=True, exist_ok=True)
    packages = [x for x in args.packages.split(",") if x]
    builders = {
        "venv": lambda: build_venv(args.cache / ("venv-" + ("-".join(packages) or "bare")), packages),
        "small": lambda: build_small(args.cache / f"small-{args.small_files}", args.small_files),
        "large": lambda: build_large(
            args.cache / f"large-{args.large_count}x{args.large_size}", args.large_count, args.large_size
        ),
    }
    corpora = {name: builders[name]() for name in args.corpora.split(",")}
    work = args.cache / "images"
    work.mkdir(exist_ok=True)
    results: dict[str, dict[str, list]] = {name: {"python": [], "native": []} for name in corpora}
    for run in range(args.runs):
        for name, src in corpora.items():
            order = ["python", "native"] if run % 2 == 0 else ["native", "python"]
            for who in order:
                image = work / f"{name}-{who}.sqfs"
                res = (run_python if who == "python" else run_native)(src, image, args)
                results[name][who].append(res)
                print(
                    f"run {run + 1}/{args.runs} {name:5s} {who:6s} {res[0]:8.2f} s {res[2]:>13,d} B "
                    f"rss {res[1] / 2**20:6.0f} MiB",
                    flush=True,
                )
    write_report(args, corpora, results)


def write_report(args, corpora, results) -> None:
    lines = [
        "# Pack benchmark: Python writer vs mksquashfs",
        "",
        f"`python benchmarks/pack.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{subprocess.run(['mksquashfs', '-version'], capture_output=True, text=True).stdout.splitlines()[0]}.",
        f"Settings: {args.compression} level {args.level}, block {args.block_size // 1024} KiB, "
        f"{args.processors} processors; median of {args.runs} interleaved runs; page cache warm after the first run.",
        "mksquashfs runs with its defaults otherwise (tails of files larger than a block are not packed "
        "into fragments; the Python writer packs them).",
        "",
        "| corpus | files | MB in | python s | mksquashfs s | time ratio | python bytes_used | mksquashfs bytes_used "
        "| size ratio | python peak RSS MiB | mksquashfs peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, src in corpora.items():
        files, size = tree_stats(src)
        py, nat = results[name]["python"], results[name]["native"]
        t_py, t_nat = statistics.median(r[0] for r in py), statistics.median(r[0] for r in nat)
        s_py, s_nat = py[-1][2], nat[-1][2]
        m_py, m_nat = max(r[1] for r in py) / 2**20, max(r[1] for r in nat) / 2**20
        lines.append(
            f"| {name} | {files:,} | {size / 1e6:,.0f} | {t_py:.2f} | {t_nat:.2f} | {t_py / t_nat:.2f} "
            f"| {s_py:,} | {s_nat:,} | {s_py / s_nat:.4f} | {m_py:.0f} | {m_nat:.0f} |"
        )
    lines += ["", "Targets: time ratio <= 1.2, size ratio <= 1.01, Python peak RSS <= 250 MB.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
