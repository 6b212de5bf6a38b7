"""PNG plots of the scaling curves (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import results_dir


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, name: str) -> Path:
    """Write FIG as results/NAME and free it."""
    out = results_dir() / name
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def pack_scaling(points: list[dict]) -> Path:
    """Pack time against number of files, Python writer and mksquashfs, log-log."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    files = [p["files"] for p in points]
    ax.plot(files, [p["python_s"] for p in points], "o-", label="condainer (Python writer)")
    ax.plot(files, [p["native_s"] for p in points], "s--", label="mksquashfs")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("files in the tree")
    ax.set_ylabel("pack time, s (median)")
    ax.set_title("Packing trees of small files")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(plt, fig, "pack-scaling.png")


def exec_scaling(ranks: list[int], series: dict[str, list[float]]) -> Path:
    """Total time of N concurrent `cnd exec` against N, one line per backend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in series.items():
        ax.plot(ranks, values, "o-", label=f"{name} backend")
    ax.set_xlabel("concurrent cnd exec on one node")
    ax.set_ylabel("time until all ended, s (median)")
    ax.set_title("cnd exec -- python -c 'import numpy'")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(plt, fig, "exec-scaling.png")
