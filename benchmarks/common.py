"""Shared measuring tools: medians of interleaved runs, peak RSS of a child, machine facts, tables."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def results_dir() -> Path:
    """benchmarks/results, or its quick/ subfolder for --quick runs (which must not replace real numbers)."""
    d = RESULTS / "quick" if os.environ.get("CONDAINER_BENCH_QUICK") == "1" else RESULTS
    d.mkdir(parents=True, exist_ok=True)
    return d


def cache_root() -> Path:
    """Where corpora are built once and reused (large: several GB for the full suite)."""
    root = Path(os.environ.get("CONDAINER_BENCH_CACHE", "/var/tmp/condainer-bench"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def progress(message: str) -> None:
    load = os.getloadavg()[0]
    print(f"[bench {time.strftime('%H:%M:%S')} load {load:.1f}] {message}", file=sys.stderr, flush=True)


def drop_caches() -> bool:
    """Drop the page, dentry and inode caches (root only); False when not allowed."""
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def run_timed(cmd: Sequence[str], **kw) -> tuple[float, int, subprocess.CompletedProcess]:
    """Wall seconds and peak RSS (bytes) of CMD and its children, via GNU time when available."""
    gnu_time = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    rss_file = None
    if gnu_time:
        import tempfile

        fd, rss_file = tempfile.mkstemp()
        os.close(fd)
        cmd = [gnu_time, "-f", "%M", "-o", rss_file, *cmd]
    start = time.perf_counter()
    result = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    seconds = time.perf_counter() - start
    rss = 0
    if rss_file:
        try:
            rss = int(Path(rss_file).read_text().strip().splitlines()[-1]) * 1024
        except (ValueError, IndexError):
            rss = 0
        os.unlink(rss_file)
    else:
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return seconds, rss, result


def interleaved(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each variant once per round, REPEATS rounds, so drift hits all variants alike."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for round_no in range(repeats):
        for name, fn in variants.items():
            samples[name].append(fn())
        progress(f"round {round_no + 1}/{repeats}: " + ", ".join(f"{n} {v[-1]:.3f}" for n, v in samples.items()))
    return samples


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    def version(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            text = (out.stdout + out.stderr).strip().splitlines()
            return text[0] if text else "?"
        except (OSError, subprocess.TimeoutExpired):
            return "not installed"

    cpus = len(os.sched_getaffinity(0))
    return "\n".join([
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {platform.machine()}, {cpus} CPUs usable, kernel {platform.release()}",
        f"- Python {platform.python_version()}",
        f"- load average when this file was written: {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        f"- mksquashfs: {version(['mksquashfs', '-version'])}",
        f"- squashfuse: {version(['dpkg-query', '-W', '-f', '${Version}', 'squashfuse'])}",
    ])


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
