"""build suite: `cnd build` end to end for the pip corpus, time split by step, both pack backends."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from benchmarks import corpus
from benchmarks.common import cache_root, median, progress, table

STEPS = re.compile(r"\((environment [\d.]+ s, pack [\d.]+ s, cleanup [\d.]+ s)\)")


def run(quick: bool, repeats: int, backends: list[str]) -> str:
    packages = corpus.QUICK_PACKAGES if quick else corpus.HEAVY_PACKAGES
    rows = []
    for backend in backends:
        project = cache_root() / f"build-project-{backend}"
        shutil.rmtree(project, ignore_errors=True)
        project.mkdir()
        (project / "requirements.txt").write_text("\n".join(packages) + "\n")
        subprocess.run([sys.executable, "-m", "condainer", "-q", "init"], cwd=project, check=True)
        (project / "condainer.yml").write_text(
            (project / "condainer.yml").read_text().replace("mount_base_directory: /tmp",
                                                             f"mount_base_directory: {cache_root()}"))
        totals: dict[str, list[float]] = {"environment": [], "pack": [], "cleanup": []}
        for _ in range(repeats):
            r = subprocess.run([sys.executable, "-m", "condainer", "build", "--force", "--backend", backend],
                               cwd=project, capture_output=True, text=True)
            match = STEPS.search(r.stderr)
            if r.returncode != 0 or not match:
                raise RuntimeError(f"cnd build failed: {r.stderr.strip().splitlines()[-1:]}")
            for part in match.group(1).split(", "):
                name, value, _ = part.split()
                totals[name].append(float(value))
        size = next(project.glob("*.squashfs")).stat().st_size
        progress(f"build {backend}: " + ", ".join(f"{k} {median(v):.1f} s" for k, v in totals.items()))
        rows.append([backend, *[median(totals[k]) for k in totals], sum(median(v) for v in totals.values()),
                     f"{size / 1e6:.1f}"])
    return (f"## build: `cnd build` of a pip project ({' '.join(packages)})\n\n"
            f"Median of {repeats} builds per backend; pip's own cache is warm after the first build, so "
            f"the environment step measures installation, not downloading.\n\n"
            + table(["pack backend", "environment s", "pack s", "cleanup s", "total s", "image MB"], rows) + "\n")
