"""cluster suite: time from `srun` to the first (and last) rank running Python, through `cnd exec`.

    python -m benchmarks cluster [--quick] [--repeats N]        # the suite, into benchmarks/results
    python -m benchmarks.cluster [--ranks 1,8,32,64] [--backends native,python] [--repeats 3]
                                 [--project DIR] [--json FILE]  # on its own, a table on stdout

Starts a throwaway Slurm on this machine (the cluster tests' harness, tests/cluster/slurm.py; needs
root and scripts/install-slurm.sh), builds a small pip project (requirements.txt: six) unless
--project names a built one, then for each backend and rank count runs
``srun -n N cnd exec --backend B -- python -c 'print(time.time())'`` on one node and reports, as
medians over the repeats: when the first rank's Python ran, when the last one's did, and when srun
returned, all counted from the moment srun was started. The "srun python" rows are the same without
cnd: what Slurm and Python alone cost on this machine.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import pathlib
import socket
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
PROBE = "import time; print(time.time(), flush=True)"
# sh -c FIVE_STARTS PYTHON PROBE: four starts of PYTHON, then the probe's (a rank that starts five times)
FIVE_STARTS = 'i=1; while [ $i -lt 5 ]; do "$0" -c pass; i=$((i+1)); done; exec "$0" -c "$1"'


def _load_harness():
    """tests/cluster as a package (slurm.py, project.py) without making tests/ itself importable."""
    name = "cnd_cluster_harness"
    if name not in sys.modules:
        here = REPO / "tests" / "cluster"
        spec = importlib.util.spec_from_file_location(name, here / "__init__.py",
                                                      submodule_search_locations=[str(here)])
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


def measure_all(cluster, project_dir, cnd_exec, *, ranks: list[int], backends: list[str], repeats: int,
                accepted: list[str]) -> list[dict]:
    """Every cell as one row: {"what", "ranks", "first", "last", "srun"} (medians), or with "skipped".

    ``cnd_exec(backend, *command)`` gives the argv of `cnd exec`; ``accepted``: the backends it can use.
    Variants are interleaved within each repeat, so a slow moment of the machine hits all of them.
    """
    variants = {"srun python": [sys.executable, "-c", PROBE]}
    for backend in backends:
        variants[f"cnd exec {backend}"] = cnd_exec(backend, "python", "-c", PROBE) if backend in accepted else None
    rows = []
    for n in ranks:
        runs: dict[str, list[dict]] = {what: [] for what, command in variants.items() if command}
        for _ in range(repeats):
            for what in runs:
                runs[what].append(measure(cluster, variants[what], n, project_dir))
        for what, command in variants.items():
            if command is None:
                rows.append({"what": what, "ranks": n, "skipped": "backend not available in this cnd"})
            else:
                rows.append({"what": what, "ranks": n, **{
                    k: statistics.median(r[k] for r in runs[what]) for k in ("first", "last", "srun")}})
    return sorted(rows, key=lambda r: (r["what"], r["ranks"]))


def table(rows: list[dict]) -> str:
    lines = ["| what | ranks | first rank s | last rank s | srun s |", "|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['what']} | {r['ranks']} | skipped: {r['skipped']} | | |")
        else:
            lines.append(f"| {r['what']} | {r['ranks']} | {r['first']:.3f} | {r['last']:.3f} | {r['srun']:.3f} |")
    return "\n".join(lines)


def measure_premounted(cluster, project_dir, cnd: list[str], *, ranks: list[int], backends: list[str],
                       repeats: int) -> list[dict]:
    """With the image mounted on the node beforehand (`cnd mount` in a step of its own), what every
    rank but the first meets on the host: `cnd exec -- python` against the environment's python
    started by path, interleaved; and the same step through a launcher and `cnd exec` in a private
    namespace, which each step makes for itself (its first rank starts the holder, the others wait
    for it and join). Rows as measure_all's."""
    host = ["env", "CONDAINER_MOUNT_MODE=host"]
    # A private mount made while the host mount exists sits on top of it and keeps `cnd umount` of the
    # host mount busy until it ends: a short linger lets the next step's host rows start clean.
    private = ["env", "CONDAINER_MOUNT_MODE=namespace", "CONDAINER_NS_LINGER=0.2"]
    mountpoint = _run_cnd_step(cluster, project_dir, [*cnd, "-q", "-d", str(project_dir), "mount", "-p"]).strip()
    _run_cnd_step(cluster, project_dir, [*cnd, "-q", "-d", str(project_dir), "umount"])
    rows = []
    for backend in backends:
        _run_cnd_step(cluster, project_dir, [*cnd, "-q", "-d", str(project_dir), "mount", "--backend", backend])
        try:
            exec_python = [*cnd, "-q", "-d", str(project_dir), "exec", "--backend", backend, "--", "python", "-c",
                           PROBE]
            variants = {f"env python, image mounted ({backend})": [*host, f"{mountpoint}/bin/python", "-c", PROBE],
                        f"cnd exec {backend}, image mounted": [*host, *exec_python],
                        f"cnd exec {backend}, namespace": [*private, *exec_python]}
            if backend == "native":  # a launcher mounts with condainer.yml's backend: auto, here native
                variants[f"launcher, host mode ({backend})"] = [*host, f"{project_dir}/bin/python", "-c", PROBE]
                variants[f"launcher, namespace ({backend})"] = [*private, f"{project_dir}/bin/python", "-c", PROBE]
                # Five starts per task: the first of a step starts (or waits for) the step's holder,
                # the other four join a namespace that exists, as a rank's later starts do.
                variants[f"env python x5, image mounted ({backend})"] = [
                    *host, "sh", "-c", FIVE_STARTS, f"{mountpoint}/bin/python", PROBE]
                variants[f"launcher x5, namespace ({backend})"] = [
                    *private, "sh", "-c", FIVE_STARTS, f"{project_dir}/bin/python", PROBE]
            for n in ranks:
                runs: dict[str, list[dict]] = {what: [] for what in variants}
                for _ in range(repeats):
                    for what, command in variants.items():
                        runs[what].append(measure(cluster, command, n, project_dir))
                for what in variants:
                    rows.append({"what": what, "ranks": n, **{
                        k: statistics.median(r[k] for r in runs[what]) for k in ("first", "last", "srun")}})
        finally:
            for attempt in range(20):  # the last private mounts may still be ending
                try:
                    _run_cnd_step(cluster, project_dir, [*cnd, "-q", "-d", str(project_dir), "umount"])
                    break
                except RuntimeError:
                    if attempt == 19:
                        raise
                    time.sleep(0.5)
    return rows


def _run_cnd_step(cluster, project_dir, argv: list[str]) -> str:
    result = cluster.run(["srun", "-n", "1", *argv], 120, cwd=project_dir)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr}")
    return result.stdout


def ratios(rows: list[dict]) -> list[str]:
    """Each way of starting a rank against the env's python on a pre-mounted image, per backend and
    rank count."""
    by = {(r["what"], r["ranks"]): r for r in rows if "srun" in r}
    lines = []
    for (what, n), row in sorted(by.items()):
        backend = next((b for b in ("native", "python") if b in what), None)
        five = " x5" if " x5" in what else ""
        base = by.get((f"env python{five}, image mounted ({backend})", n))
        if base and not what.startswith("env python") and not what.startswith("srun python"):
            lines.append(f"- {what}, {n} ranks: srun {row['srun']:.2f} s vs {base['srun']:.2f} s = "
                         f"{row['srun'] / base['srun']:.2f}x")
    return lines


def _measure_on_own_cluster(ranks: list[int], backends: list[str], repeats: int,
                            project_dir: pathlib.Path | None = None) -> tuple[list[dict], list[dict]]:
    # Ranks must run the condainer of this checkout, as in the tests (srun exports the environment).
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p)
    slurm, project = _load_harness()
    slurm.reap_leftovers()
    host = socket.gethostname().split(".")[0]
    cluster = slurm.SlurmCluster([slurm.Node(host, "127.0.0.1")], {"bench": [host]}, default="bench",
                                 keep_visible=[REPO, sys.prefix, sys.base_prefix])
    try:
        cluster.start()
        if project_dir is None:
            project_dir = project.build_six_project(cluster.state / "project").path
        rows = measure_all(cluster, project_dir.resolve(), project.cnd_exec, ranks=ranks, backends=backends,
                           repeats=repeats, accepted=project.exec_backends())
        from benchmarks.exec_cost import user_venv

        cnd = [str(user_venv() / "bin" / "cnd")]  # installed by pip, as a user has it
        premounted = measure_premounted(cluster, project_dir.resolve(), cnd, ranks=ranks, backends=backends,
                                        repeats=repeats)
        return rows, premounted
    finally:
        cluster.stop()


def run(quick: bool, repeats: int, backends: list[str]) -> str:
    """The suite for `python -m benchmarks cluster`: a markdown section."""
    ranks = [1, 8] if quick else [1, 8, 32, 64]
    try:
        rows, premounted = _measure_on_own_cluster(ranks, backends, repeats)
    except Exception as exc:  # noqa: BLE001 (no Slurm here: say so in the results instead)
        return f"## cluster: srun to first rank\n\nnot measured: {type(exc).__name__}: {exc}\n"
    return ("## cluster: `srun -n N cnd exec -- python`, one node, time to the first and last rank\n\n"
            f"Seconds from starting srun, medians of {repeats}; Slurm 22.05 on this machine "
            "(tests/cluster harness), a pip project (six). `srun python` is the same without cnd.\n\n"
            + table(rows) + "\n\n"
            "### image mounted on the node beforehand (every rank but the first)\n\n"
            "`cnd exec` of a pip-installed cnd against the environment's own python started by path, "
            f"interleaved, medians of {repeats}:\n\n" + table(premounted) + "\n\n" + "\n".join(ratios(premounted)) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,8,32,64", help="comma-separated rank counts (default: %(default)s)")
    parser.add_argument("--backends", default="native,python", help="default: %(default)s")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell; the median is reported")
    parser.add_argument("--project", type=pathlib.Path, help="a built project (default: build one)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the rows here")
    args = parser.parse_args(argv)
    rows, premounted = _measure_on_own_cluster([int(n) for n in args.ranks.split(",")], args.backends.split(","),
                                               args.repeats, args.project)
    print(f"# srun -> Python, one node ({socket.gethostname()}), {time.strftime('%Y-%m-%d %H:%M')}, "
          f"medians of {args.repeats}\n")
    print(table(rows))
    print("\n## image mounted beforehand\n")
    print(table(premounted))
    print("\n".join(ratios(premounted)))
    rows = rows + premounted
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
