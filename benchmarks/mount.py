"""Mount benchmark: our Python FUSE reader vs squashfuse, squashfuse_ll and the kernel's squashfs.

    python benchmarks/mount.py [--quick] [--runs N]      (or: python -m benchmarks mount [--quick])

Corpus: a venv with numpy scipy pandas matplotlib sympy from PyPI, built at ENV_PATH and packed with
mksquashfs (zstd) into benchmarks/.cache/ once.  The image is mounted at ENV_PATH, the path it was
built at, so its interpreter and shebangs work.  Each round runs every backend in turn
(interleaved), and the table reports medians.  Cold runs unmount, drop the page cache
(sync; echo 3 > /proc/sys/vm/drop_caches) and mount again, so they need root.

Measures: mount ready (until statvfs answers), heavy import cold and warm, warm `find -type f`,
warm and cold read of every file, daemon peak RSS.  Writes benchmarks/results/mount.md.
Not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

CACHE = os.path.join(HERE, ".cache")
RESULTS = os.path.join(HERE, "results")
ENV_PATH = "/tmp/condainer-bench-env"
PACKAGES = ["numpy", "scipy", "pandas", "matplotlib", "sympy"]
IMPORT = "import numpy, scipy.linalg, pandas, matplotlib, sympy"
BACKENDS = ["python", "squashfuse_ll", "squashfuse", "kernel"]


def sh(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


# -- corpus --------------------------------------------------------------------------------------


def pack_with_mksquashfs(src: str, image: str) -> None:
    """The reference images: mksquashfs zstd defaults, written to a temp file, then renamed."""
    tmp = image + ".tmp"
    sh(["mksquashfs", src, tmp, "-comp", "zstd", "-noappend", "-no-progress", "-quiet"], stdout=subprocess.DEVNULL)
    os.replace(tmp, image)


def build_image() -> str:
    """benchmarks/.cache/env-zstd.sqfs, built once; ENV_PATH is left as an empty mount point."""
    image = os.path.join(CACHE, "env-zstd.sqfs")
    if os.path.exists(image):
        os.makedirs(ENV_PATH, exist_ok=True)
        return image
    os.makedirs(CACHE, exist_ok=True)
    if os.path.ismount(ENV_PATH):
        unmount(ENV_PATH)
    shutil.rmtree(ENV_PATH, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    print(f"building {ENV_PATH} with {base} ...", flush=True)
    sh([base, "-m", "venv", ENV_PATH])
    sh([f"{ENV_PATH}/bin/pip", "install", "-q", "--disable-pip-version-check", *PACKAGES])
    sh([f"{ENV_PATH}/bin/python", "-c", IMPORT])  # the env works before we pack it
    pack_with_mksquashfs(ENV_PATH, image)
    shutil.rmtree(ENV_PATH)
    os.makedirs(ENV_PATH)
    return image


def build_many_files_image() -> str:
    """benchmarks/.cache/100k-zstd.sqfs: 100,000 small files in 1,000 directories (mount latency)."""
    image = os.path.join(CACHE, "100k-zstd.sqfs")
    if os.path.exists(image):
        return image
    src = os.path.join(CACHE, "100k-src")
    shutil.rmtree(src, ignore_errors=True)
    for i in range(1000):
        d = os.path.join(src, f"d{i:04d}")
        os.makedirs(d)
        for k in range(100):
            with open(os.path.join(d, f"file{k:03d}.py"), "wb") as f:
                f.write(b"# %d %d\n" % (i, k) * (k % 7 + 1))
    pack_with_mksquashfs(src, image)
    shutil.rmtree(src)
    return image


def mount_ready_100k(backend: str, image: str) -> float:
    mnt = os.path.join(CACHE, "mnt-100k")
    os.makedirs(mnt, exist_ok=True)
    if os.path.ismount(mnt):
        unmount(mnt)
    try:
        t = mount(backend, image, mnt)
        os.stat(os.path.join(mnt, "d0999", "file099.py"))  # and it answers a deep lookup
        return t
    finally:
        unmount(mnt)


# -- mounts --------------------------------------------------------------------------------------


def unmount(mnt: str) -> None:
    for cmd in (["fusermount3", "-u", mnt], ["umount", mnt], ["umount", "-l", mnt]):
        if not os.path.ismount(mnt):
            break
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if not os.path.ismount(mnt):
            return
        time.sleep(0.05)
    raise RuntimeError(f"cannot unmount {mnt}")


def wait_mounted(mnt: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.ismount(mnt):
            try:
                os.statvfs(mnt)
                return
            except OSError:
                pass
        time.sleep(0.001)
    raise RuntimeError(f"{mnt} not mounted after {timeout} s")


def mount(backend: str, image: str, mnt: str) -> float:
    """Mount and return the seconds until the mount answers statvfs."""
    t0 = time.perf_counter()
    if backend == "python":
        from condainer.fs.fuse import mount_image

        mount_image(image, mnt, log_path=os.path.join(CACHE, "fuse.log"))
    elif backend in ("squashfuse", "squashfuse_ll"):
        sh([backend, image, mnt])
    elif backend == "kernel":
        sh(["mount", "-o", "loop,ro", "-t", "squashfs", image, mnt])
    else:
        raise ValueError(backend)
    wait_mounted(mnt)
    return time.perf_counter() - t0


def daemon_pid(backend: str, mnt: str) -> int | None:
    if backend == "kernel":
        return None
    needle = "condainer.fs.fuse" if backend == "python" else backend
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        joined = b" ".join(argv).decode(errors="replace")
        if needle in joined and mnt in joined and "mount.py" not in joined:
            return int(pid)
    return None


def peak_rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed(cmd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, executable="/bin/bash")
    return time.perf_counter() - t0


# -- one round -----------------------------------------------------------------------------------


def run_round(backend: str, image: str, quick: bool) -> dict[str, float]:
    mnt = ENV_PATH
    py = f"{mnt}/bin/python"
    find = f"find {mnt} -type f | wc -l"
    read_all = f"find {mnt} -type f -print0 | xargs -0 cat > /dev/null"
    imp = f"{py} -c '{IMPORT}'"
    r: dict[str, float] = {}
    r["mount ready 100k files s"] = mount_ready_100k(backend, build_many_files_image())
    # cold import on a fresh mount
    unmount(mnt)
    drop_caches()
    r["mount ready s"] = mount(backend, image, mnt)
    r["import cold s"] = timed(imp)
    timed(imp)
    r["import warm s"] = timed(imp)
    timed(find)
    r["find warm s"] = timed(find)
    timed(read_all)
    r["read all warm s"] = timed(read_all)
    r["daemon peak RSS MB"] = peak_rss_mb(daemon_pid(backend, mnt))
    # cold full read on a fresh mount
    unmount(mnt)
    drop_caches()
    mount(backend, image, mnt)
    r["read all cold s"] = timed(read_all)
    unmount(mnt)
    return r


MEASURES = [
    "mount ready s",
    "mount ready 100k files s",
    "import cold s",
    "import warm s",
    "find warm s",
    "read all warm s",
    "read all cold s",
    "daemon peak RSS MB",
]
TARGETS = {  # ours / squashfuse_ll
    "import cold s": 1.2,
    "import warm s": 1.0,
    "find warm s": 0.5,
    "read all warm s": 0.5,
    "read all cold s": 1.5,
}


def report(results: dict[str, list[dict]], runs: int, image: str, quick: bool) -> str:
    backends = list(results)
    med = {
        b: {
            m: (statistics.median(v) if (v := [r[m] for r in results[b] if r.get(m) is not None]) else None)
            for m in MEASURES
        }
        for b in backends
    }
    lines = [
        "# Mount benchmark",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, `benchmarks/mount.py"
        f"{' --quick' if quick else ''}`, median of {runs} interleaved round(s), "
        f"{os.cpu_count()} CPUs. Image: {os.path.basename(image)} "
        f"({os.path.getsize(image) / 1e6:.0f} MB, mksquashfs zstd) of a venv with "
        f"{' '.join(PACKAGES)}, mounted at {ENV_PATH}.",
        "",
        "| measure | " + " | ".join(backends) + " | python / squashfuse_ll | target |",
        "|---|" + "---|" * (len(backends) + 2),
    ]
    for m in MEASURES:
        cells = []
        for b in backends:
            v = med[b][m]
            cells.append("-" if v is None else f"{v:.3f}" if m.endswith(" s") else f"{v:.1f}")
        ratio = "-"
        if "python" in med and "squashfuse_ll" in med:
            a, b = med["python"][m], med["squashfuse_ll"][m]
            if a is not None and b:
                ratio = f"{a / b:.2f}"
        target = f"<= {TARGETS[m]}" if m in TARGETS else ("<= 0.5 s" if m.startswith("mount ready") else "")
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {ratio} | {target} |")
    lines += [
        "",
        "Commands: import = `bin/python -c '" + IMPORT + "'`; find = `find MNT -type f | wc -l`;",
        "read all = `find MNT -type f -print0 | xargs -0 cat > /dev/null`. Warm = repeated right",
        "after an untimed run on the same mount; cold = fresh mount after drop_caches.",
        "",
    ]
    return "\n".join(lines)


def run(quick: bool = False, repeats: int = 5, backends=None, output: str | None = None) -> str:
    """Run the suite and return its markdown section (the ``python -m benchmarks mount`` entry).

    ``backends`` of the benchmarks frame ("native", "python") are ignored: this suite always puts
    the Python reader beside every native reader present."""
    if os.geteuid() != 0:
        raise SystemExit("mount benchmark needs root (drop_caches, kernel loop mount)")
    runs = 1 if quick else repeats
    names = [b for b in BACKENDS if b in ("python", "kernel") or shutil.which(b)]
    image = build_image()
    build_many_files_image()
    results: dict[str, list[dict]] = {b: [] for b in names}
    try:
        for i in range(runs):
            for b in names:
                r = run_round(b, image, quick)
                results[b].append(r)
                print(
                    f"round {i + 1} {b}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items() if v is not None),
                    flush=True,
                )
    finally:
        if os.path.ismount(ENV_PATH):
            unmount(ENV_PATH)
    text = report(results, runs, image, quick)
    if output:
        os.makedirs(os.path.dirname(output), exist_ok=True)
        with open(output, "w") as f:
            f.write(text)
    return text


def main() -> int:
    p = argparse.ArgumentParser(description="Mount benchmark (see module docstring).")
    p.add_argument("--quick", action="store_true", help="one round")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--output", default=os.path.join(RESULTS, "mount.md"))
    args = p.parse_args()
    print(run(quick=args.quick, repeats=args.runs, output=args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
