"""benchmarks/cluster.py runs (its numbers are not checked, only that every cell is measured)."""

from __future__ import annotations

import importlib.util

from .conftest import REPO
from .project import cnd_exec, exec_backends


def load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmarks_cluster", REPO / "benchmarks" / "cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_measures_every_cell(slurm, project):
    bench = load_benchmark()
    rows = bench.run(slurm, project.path, cnd_exec, ranks=[1, 4], backends=["native", "python"], repeat=1,
                     accepted=exec_backends())
    assert [(r["what"], r["ranks"]) for r in rows] == [
        (what, n) for what in ("srun python", "cnd exec native", "cnd exec python") for n in (1, 4)
    ]
    for row in rows:
        if "skipped" not in row:
            assert 0 < row["first"] <= row["last"] <= row["srun"]
    assert "| cnd exec native | 4 |" in bench.table(rows)
