"""Time from `srun` to the first (and last) rank running Python, through `cnd exec`, on one Slurm node.

    python benchmarks/cluster.py [--ranks 1,8,32,64] [--backends native,python] [--repeat 3]
                                 [--project DIR] [--json FILE]

Starts a throwaway Slurm on this machine (the cluster tests' harness, tests/cluster/slurm.py; needs
root and scripts/install-slurm.sh), builds a small pip project (requirements.txt: six) unless
--project names a built one, then for each backend and rank count runs
``srun -n N cnd exec [--backend B] -- python -c 'print(time.time())'`` and reports, as medians over
--repeat runs: the first rank's start, the last rank's start, and the whole srun, all from the moment
srun was started. The "srun python" row is the same without cnd: what Slurm and Python alone cost.
A backend that `cnd exec` does not accept yet is reported as skipped.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import pathlib
import socket
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
PROBE = "import time; print(time.time(), flush=True)"


def _load_harness():
    """tests/cluster as a package (slurm.py and project.py), without making tests/ importable."""
    name = "cnd_cluster_harness"
    spec = importlib.util.spec_from_file_location(
        name, REPO / "tests" / "cluster" / "__init__.py", submodule_search_locations=[str(REPO / "tests" / "cluster")]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.slurm"), importlib.import_module(f"{name}.project")


def measure(cluster, command: list[str], ranks: int, cwd, timeout: float = 300) -> dict[str, float]:
    """One srun: seconds from its start to the first rank's Python, the last rank's, and srun's end."""
    start = time.time()
    result = cluster.run(["srun", "-n", str(ranks), *command], timeout, cwd=cwd)
    end = time.time()
    if result.returncode != 0:
        raise RuntimeError(f"srun -n {ranks} {' '.join(command)} failed:\n{result.stderr}")
    stamps = sorted(float(line) for line in result.stdout.split())
    if len(stamps) != ranks:
        raise RuntimeError(f"expected {ranks} ranks to report, got {len(stamps)}")
    return {"first": stamps[0] - start, "last": stamps[-1] - start, "srun": end - start}


def run(cluster, project_dir, cnd_exec, *, ranks: list[int], backends: list[str], repeat: int,
        accepted: list[str]) -> list[dict]:
    """Every measurement as one row: {"what", "ranks", "first", "last", "srun"} (medians) or "skipped".

    ``cnd_exec(backend, *command)`` gives the argv of `cnd exec`; ``accepted``: the backends it can use.
    """
    rows = []
    variants = [("srun python", [sys.executable, "-c", PROBE])]
    for backend in backends:
        command = cnd_exec(backend, "python", "-c", PROBE)
        variants.append((f"cnd exec {backend}", command if backend in accepted else None))
    for what, command in variants:
        for n in ranks:
            if command is None:
                rows.append({"what": what, "ranks": n, "skipped": "backend not available in this cnd"})
                continue
            runs = [measure(cluster, command, n, project_dir) for _ in range(repeat)]
            rows.append({"what": what, "ranks": n,
                         **{k: statistics.median(r[k] for r in runs) for k in ("first", "last", "srun")}})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| what | ranks | first rank s | last rank s | srun s |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['what']} | {r['ranks']} | skipped: {r['skipped']} | | |")
        else:
            lines.append(f"| {r['what']} | {r['ranks']} | {r['first']:.3f} | {r['last']:.3f} | {r['srun']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,8,32,64", help="comma-separated rank counts (default: %(default)s)")
    parser.add_argument("--backends", default="native,python", help="default: %(default)s")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is reported")
    parser.add_argument("--project", type=pathlib.Path, help="a built project (default: build one)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the rows here")
    args = parser.parse_args(argv)

    slurm, project = _load_harness()
    slurm.reap_leftovers()
    host = socket.gethostname().split(".")[0]
    cluster = slurm.SlurmCluster([slurm.Node(host, "127.0.0.1")], {"bench": [host]}, default="bench")
    try:
        cluster.start()
        project_dir = args.project
        if project_dir is None:
            project_dir = project.build_six_project(cluster.state / "project").path
        rows = run(cluster, project_dir.resolve(), project.cnd_exec, ranks=[int(n) for n in args.ranks.split(",")],
                   backends=args.backends.split(","), repeat=args.repeat, accepted=project.exec_backends())
    finally:
        cluster.stop()
    print(f"# srun -> Python, one node, {host}, {time.strftime('%Y-%m-%d %H:%M')}, medians of {args.repeat}\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
