"""benchmarks/cluster.py runs (its numbers are not checked, only that every cell is measured)."""

from __future__ import annotations

from benchmarks import cluster as bench

from .project import cnd_exec, exec_backends


def test_benchmark_measures_every_cell(slurm, project):
    rows = bench.measure_all(slurm, project.path, cnd_exec, ranks=[1, 4], backends=["native", "python"],
                             repeats=1, accepted=exec_backends())
    assert [(r["what"], r["ranks"]) for r in rows] == [
        (what, n) for what in ("cnd exec native", "cnd exec python", "srun python") for n in (1, 4)
    ]
    for row in rows:
        if "skipped" not in row:
            assert 0 < row["first"] <= row["last"] <= row["srun"]
    assert "| cnd exec native | 4 |" in bench.table(rows)
