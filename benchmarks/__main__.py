"""`python -m benchmarks [all|pack|default|reuse|mount|exec|build|cluster] [--quick] [--repeats N]`.

Each suite compares the Python implementation with the native tools on the same input in the same
run and writes benchmarks/results/<suite>.md; RESULTS.md gathers them under the machine's facts.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from benchmarks.common import machine, progress, results_dir

SUITES = {
    "pack": "benchmarks.pack",
    "default": "benchmarks.pack_default",
    "reuse": "benchmarks.reuse",
    "mount": "benchmarks.mount",
    "exec": "benchmarks.exec_bench",
    "build": "benchmarks.build_bench",
    "cluster": "benchmarks.cluster",
}


def python_backend_available() -> bool:
    try:
        importlib.import_module("condainer.fs.writer")
        importlib.import_module("condainer.fs.fuse")
    except ImportError:
        return False
    return True


def write_results() -> None:
    out = results_dir()
    parts = ["# condainer benchmark results\n", "Machine and versions:\n", machine(), ""]
    for suite in SUITES:
        section = out / f"{suite}.md"
        if section.exists():
            parts += [section.read_text().strip(), ""]
    (out / "RESULTS.md").write_text("\n".join(parts) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("suite", nargs="?", default="all", choices=["all", *SUITES])
    parser.add_argument("--quick", action="store_true", help="small corpora and few repeats (< 5 minutes)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (default 3, quick 1)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    if args.quick:
        os.environ["CONDAINER_BENCH_QUICK"] = "1"  # results go to benchmarks/results/quick/
    backends = ["native", "python"] if python_backend_available() else ["native"]
    for suite in SUITES if args.suite == "all" else [args.suite]:
        try:
            module = importlib.import_module(SUITES[suite])
        except ImportError as exc:
            progress(f"suite {suite} not available: {exc}")
            continue
        progress(f"suite {suite} ({'quick' if args.quick else 'full'}, {repeats} repeats)")
        section = module.run(quick=args.quick, repeats=repeats, backends=backends)
        (results_dir() / f"{suite}.md").write_text(section)
        write_results()
    progress(f"wrote {results_dir() / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
