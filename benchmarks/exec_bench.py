"""exec suite: what one `cnd exec` costs a rank (exec_cost.py), then N concurrent
`cnd exec -- python -c 'import numpy'` on one node, both backends.

What it shows: the per-node reference count lets every rank share one mount; the total time for N
ranks should grow with the work (N Python startups on 2 cores), not with mount contention.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from benchmarks import corpus
from benchmarks.common import cache_root, median, progress, table

CODE = "import numpy"


def make_project(env: Path) -> Path:
    """A project whose image is the cached env packed by mksquashfs (what `cnd build` would make)."""
    project = cache_root() / f"exec-project-{env.name}"
    marker = project / ".complete"
    if marker.exists():
        return project
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    base = cache_root() / "mnt"
    base.mkdir(exist_ok=True)
    uid = str(uuid.uuid5(uuid.NAMESPACE_URL, str(project)))
    (project / "condainer.yml").write_text(f"mount_base_directory: {base}\nuuid: {uid}\n")
    subprocess.run([sys.executable, "-m", "condainer", "-q", "image", "pack", str(env),
                    str(project / f"{uid}.squashfs"), "--backend", "native"], check=True)
    marker.write_text("")
    return project


def burst(project: Path, backend: str, ranks: int) -> tuple[float, int]:
    """Start RANKS execs at once; wall seconds until all ended, and how many failed."""
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "condainer", "-q", "-d", str(project), "exec",
                               "--backend", backend, "--", "python", "-c", CODE],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(ranks)]
    failures = sum(1 for p in procs if p.wait() != 0)
    return time.perf_counter() - start, failures


def run(quick: bool, repeats: int, backends: list[str]) -> str:
    env = corpus.python_env(quick)
    project = make_project(env)
    from benchmarks import exec_cost

    cost = exec_cost.run(project, backends, runs=10 if quick else 30)
    from benchmarks import rank_cost

    cost += "\n" + rank_cost.run(project, exec_cost.user_venv(), 10 if quick else 30, unpacked=env)
    rank_counts = [1, 8] if quick else [1, 8, 32, 64]
    rows = []
    for ranks in rank_counts:
        samples: dict[str, list[float]] = {b: [] for b in backends}
        failed: dict[str, int] = {b: 0 for b in backends}
        for _ in range(repeats):
            for backend in backends:  # interleaved
                seconds, failures = burst(project, backend, ranks)
                samples[backend].append(seconds)
                failed[backend] += failures
        progress(f"exec {ranks} ranks: " + ", ".join(f"{b} {median(samples[b]):.2f} s" for b in backends))
        rows.append([ranks, *[median(samples[b]) for b in backends], *[failed[b] for b in backends]])
    headers = ["ranks", *[f"{b} s" for b in backends], *[f"{b} failures" for b in backends]]
    from benchmarks import plots

    png = plots.exec_scaling(rank_counts, {b: [row[1 + i] for row in rows] for i, b in enumerate(backends)})
    return (cost + "\n"
            f"## exec: concurrent `cnd exec -- python -c '{CODE}'` on one node\n\n"
            f"Median of {repeats} bursts per cell, backends interleaved; each burst starts all ranks at once "
            f"from an unmounted state and ends when the last rank exits (so it includes one mount and one "
            f"unmount). Image: the {'quick ' if quick else ''}Python env corpus.\n\n"
            + table(headers, rows) + f"\n\n![exec scaling]({png.name})\n")
