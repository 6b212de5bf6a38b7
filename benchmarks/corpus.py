"""Corpora built once and cached under cache_root(): a real Python env, small-file trees, large files.

Each builder writes into a temporary name and renames when complete, so an interrupted build is
redone next time instead of being measured half-made.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.common import cache_root, progress

HEAVY_PACKAGES = ["numpy", "scipy", "pandas", "matplotlib", "sympy"]
QUICK_PACKAGES = ["numpy"]
HEAVY_IMPORT = "import numpy, scipy.linalg, pandas, matplotlib, sympy"
QUICK_IMPORT = "import numpy"


def _finish(tmp: Path, final: Path) -> Path:
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def python_env(quick: bool = False) -> Path:
    """A venv with numpy, scipy, pandas, matplotlib, sympy from PyPI (quick: numpy only)."""
    packages = QUICK_PACKAGES if quick else HEAVY_PACKAGES
    final = cache_root() / ("pyenv-quick" if quick else "pyenv")
    if (final / ".complete").exists():
        return final
    progress(f"building corpus {final.name}: venv + {' '.join(packages)} from PyPI")
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(tmp)], check=True)
    subprocess.run([str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    *packages], check=True)
    # venvs hard-code their path in scripts, not in what `bin/python -c import ...` needs: relocatable
    # enough to be mounted anywhere for the import benchmarks.
    (tmp / ".complete").write_text("")
    return _finish(tmp, final)


def small_files(count: int) -> Path:
    """COUNT files of 0-6 KiB (text-like, compressible, 5% duplicates) in directories of 100."""
    final = cache_root() / f"small-{count}"
    if (final / ".complete").exists():
        return final
    progress(f"building corpus {final.name}")
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rng = random.Random(count)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 12))) for _ in range(4000)]
    previous = b""
    for i in range(count):
        d = tmp / f"d{i // 10000:03d}" / f"s{(i // 100) % 100:02d}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        if previous and rng.random() < 0.05:
            data = previous
        else:
            size = rng.randint(0, 6 * 1024)
            chunks, n = [], 0
            while n < size:
                w = rng.choice(words)
                chunks.append(w)
                n += len(w) + 1
            data = b" ".join(chunks)[:size]
        (d / f"f{i}.py").write_bytes(data)
        previous = data
    (tmp / ".complete").write_text("")
    return _finish(tmp, final)


def large_files(count: int = 3, size: int = 1 << 30) -> Path:
    """COUNT files of SIZE bytes: half compressible text-like data, half random (like binaries/data)."""
    final = cache_root() / f"large-{count}x{size >> 20}M"
    if (final / ".complete").exists():
        return final
    progress(f"building corpus {final.name}")
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rng = random.Random(size)
    text = b"".join(b"%d,%f,sample_%d\n" % (i, rng.random(), i % 97) for i in range(40000))
    for n in range(count):
        with open(tmp / f"big{n}.dat", "wb") as fh:
            written = 0
            while written < size:
                chunk = text if (written // (8 << 20)) % 2 == 0 else os.urandom(len(text))
                chunk = chunk[: size - written]
                fh.write(chunk)
                written += len(chunk)
    (tmp / ".complete").write_text("")
    return _finish(tmp, final)


# Changed copies of the corpora, for re-packing against the image of the original (benchmarks/reuse.py).
ADDED_PACKAGE = "networkx"  # mid-sized: about 19 MB in 700-odd files, pure Python
REMOVED_PACKAGE = "cycler"  # small, a matplotlib dependency (the venv need not import afterwards)
UPGRADED_PACKAGE = "setuptools"  # the venv's own, upgraded to the newest the index has


def python_env_changed(quick: bool, change: str) -> Path:
    """A copy of python_env(quick) changed by pip: ``add`` installs ADDED_PACKAGE; ``mix`` also
    uninstalls REMOVED_PACKAGE (where installed) and upgrades UPGRADED_PACKAGE."""
    base = python_env(quick)
    final = base.with_name(f"{base.name}-{change}")
    if (final / ".complete").exists():
        return final
    progress(f"building corpus {final.name}: {base.name} changed by pip ({change})")
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp, symlinks=True)
    (tmp / ".complete").unlink()
    pip = [str(tmp / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", ADDED_PACKAGE], check=True)
    if change == "mix":
        installed = subprocess.run([*pip, "list"], capture_output=True, text=True, check=True).stdout.lower()
        if REMOVED_PACKAGE in installed:
            subprocess.run([*pip, "uninstall", "-y", REMOVED_PACKAGE], check=True)
        subprocess.run([*pip, "install", "-U", UPGRADED_PACKAGE], check=True)
    (tmp / ".complete").write_text("")
    return _finish(tmp, final)


def small_files_changed(count: int, every: int = 100) -> Path:
    """A copy of small_files(count) with every EVERY-th file (1 % by default) given new content of
    about its size: changes spread over the whole tree, the worst case for fragment reuse."""
    base = small_files(count)
    final = base.with_name(f"{base.name}-changed")
    if (final / ".complete").exists():
        return final
    progress(f"building corpus {final.name}")
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp, symlinks=True)
    rng = random.Random(every)
    for i in range(0, count, every):
        path = tmp / f"d{i // 10000:03d}" / f"s{(i // 100) % 100:02d}" / f"f{i}.py"
        old = path.read_bytes()
        path.write_bytes(old[: len(old) // 2] + b"changed %d\n" % rng.randint(0, 1 << 30) + old[len(old) // 2 :])
    (tmp / ".complete").write_text("")
    return _finish(tmp, final)
