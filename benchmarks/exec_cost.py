"""What one `cnd exec` costs a rank, against a bare start of the interpreter cnd runs on.

cnd is installed as a user installs it: `pip install <this checkout>` (not editable) into a venv of its
own, whose console script `cnd` is what is timed. Each command runs with a plain job PATH
(/usr/local/bin:/usr/bin:/bin). Wall time: medians of interleaved runs (A B A B ...), and the median
of the pairwise ratios. File-system calls: `strace -f -e trace=%file` (one line per call), the command's own child
included (they are the same on every run). Rows:

- `python -c pass` and `python -I -S -c pass`: the interpreter alone, with and without site.
- `cnd exec -- true` with the image mounted on the node (every rank but the first), per backend,
  and not mounted (each run mounts and unmounts).
- `cnd mount` with the image mounted: what `source ./activate` runs in a job script.
- floors: a console script that imports one module of an installed package and runs `true` as a
  child (what any launcher that waits for its command pays before doing anything), and
  `python -I -S` replacing itself with `true` (a launcher that does not wait).
"""

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, cache_root, progress, table

JOB_PATH = "/usr/local/bin:/usr/bin:/bin"

FLOOR_SCRIPT = """#!{python}
import sys
from condainer.project.layout import Layout
import os
pid = os.posix_spawn("/usr/bin/true", ["true"], os.environ)
os.waitpid(pid, 0)
"""


def user_venv() -> Path:
    """A venv with this checkout installed by pip as a user would (refreshed on every run)."""
    venv = cache_root() / "user-venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", str(REPO)], check=True)
    else:
        subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
                        str(REPO)], check=True, capture_output=True)
    shutil.rmtree(REPO / "build", ignore_errors=True)  # setuptools' in-tree build directory
    floor = venv / "bin" / "cnd-floor"
    floor.write_text(FLOOR_SCRIPT.format(python=venv / "bin" / "python"))
    floor.chmod(0o755)
    return venv


def _env() -> dict[str, str]:
    # Mount mode host: this table is the host mount's per-rank path (rank_cost.py has both modes).
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PATH": JOB_PATH,
            "CONDAINER_MOUNT_MODE": "host"}


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def traced_calls(cmd: list[str]) -> list[tuple[int, str]] | None:
    """Every file-system call of CMD and its children (`strace -f -e trace=%file`) as (pid, call
    text), in order; None without strace."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    out = cache_root() / "strace.txt"
    subprocess.run([strace, "-f", "-e", "trace=%file", "-o", str(out), *cmd], env=_env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    calls = []
    for line in out.read_text().splitlines():
        pid, _, call = line.partition(" ")
        call = call.lstrip()
        if pid.isdigit() and call[:1].isalpha():  # not "<... resumed>", "+++ exited", "--- SIG"
            calls.append((int(pid), call))
    return calls


def file_syscalls(cmd: list[str]) -> int | None:
    """How many file-system calls CMD and its children make; None without strace."""
    calls = traced_calls(cmd)
    return None if calls is None else len(calls)


def _loads_module(call: str) -> bool:
    """An openat of a compiled module (.pyc) or an extension (.so)."""
    return call.startswith("openat(") and ('.pyc"' in call or '.so"' in call)


def breakdown(bare: list[str], exec_cmd: list[str], floor: list[str], project: Path) -> list[list] | None:
    """Where a mounted exec's file-system calls go, and the least any console script could make.

    The exec's own work is every call of cnd's process from its first look at the project's
    condainer.yml to its end: the lock, its record, the mount check, the activation, the PATH
    lookup, the release. The floor already pays the interpreter, the console script, one module of
    an installed package and a waited-for child, so floor + work is what the same guarantees would
    cost with every per-rank line in one module.
    """
    traces = {name: traced_calls(cmd) for name, cmd in (("bare", bare), ("exec", exec_cmd), ("floor", floor))}
    if any(t is None for t in traces.values()):
        return None
    calls = traces["exec"]
    main = calls[0][0]
    own = [c for pid, c in calls if pid == main]
    yml = f'"{project}/condainer.yml"'
    start = next(i for i, c in enumerate(own) if yml in c)
    work = len(own) - start
    modules = sum(1 for c in own[:start] if _loads_module(c))
    bare_modules = sum(1 for _, c in traces["bare"] if _loads_module(c))
    child = len(calls) - len(own)
    base, floor_n = len(traces["bare"]), len(traces["floor"])
    rows = [
        ["`python -c pass`", base, 1.0],
        ["cnd's process up to its first look at condainer.yml (interpreter, script, "
         f"{modules - bare_modules} more modules than `python -c pass` loads)", start, start / base],
        ["cnd's own work: lock, record, mount check, activation, PATH lookup, release", work, work / base],
        ["the command `true`", child, child / base],
        ["`cnd exec -- true` in all", len(calls), len(calls) / base],
        ["floor (console script, one module, a waited-for child)", floor_n, floor_n / base],
        ["least with the same work: floor + cnd's own work", floor_n + work, (floor_n + work) / base],
    ]
    return rows


def compare(variants: dict[str, list[str]], baseline: str, runs: int) -> dict[str, dict[str, float]]:
    """Per variant: median wall seconds and the median of its pairwise ratios to BASELINE (each
    variant is run right after the baseline, round after round)."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    for cmd in variants.values():  # warm the page cache and the venv's .pyc files
        wall(cmd)
    for _ in range(runs):
        for name, cmd in variants.items():
            if name == baseline:
                continue
            base = wall(variants[baseline])
            seconds = wall(cmd)
            samples[baseline].append(base)
            samples[name].append(seconds)
            ratios[name].append(seconds / base)
    return {name: {"wall": statistics.median(samples[name]),
                   "ratio": statistics.median(ratios[name]) if ratios[name] else 1.0} for name in variants}


def run(project: Path, backends: list[str], runs: int) -> str:
    """The per-exec table for PROJECT's image (markdown)."""
    venv = user_venv()
    python, cnd = str(venv / "bin" / "python"), str(venv / "bin" / "cnd")
    exec_true = [cnd, "-q", "-d", str(project), "exec"]
    rows = []
    base = [python, "-c", "pass"]
    plain = {"`python -c pass` (the interpreter cnd runs on)": base,
             "`python -I -S -c pass`": [python, "-I", "-S", "-c", "pass"],
             "floor: console script importing one module, runs `true` as a child": [str(venv / "bin" / "cnd-floor")],
             "floor: `python -I -S` replacing itself with `true`":
                 [python, "-I", "-S", "-c", "import os; os.execv('/usr/bin/true', ['true'])"]}
    measured = compare(plain, next(iter(plain)), runs)
    counts = {name: file_syscalls(cmd) for name, cmd in plain.items()}
    split = None
    for backend in backends:
        progress(f"exec cost: {backend} backend")
        subprocess.run([cnd, "-q", "-d", str(project), "mount", "--backend", backend], env=_env(), check=True)
        try:
            mounted = {"base": base,
                       f"`cnd exec -- true`, image mounted ({backend})": [*exec_true, "--", "true"],
                       f"`cnd mount`, image mounted ({backend}): what `source ./activate` runs": [
                           cnd, "-q", "-d", str(project), "mount", "--backend", backend]}
            got = compare(mounted, "base", runs)
            if split is None:
                split = breakdown(base, mounted[list(mounted)[1]], plain[list(plain)[2]], project)
            for name, cmd in list(mounted.items())[1:]:
                measured[name], counts[name] = got[name], file_syscalls(cmd)
        finally:
            subprocess.run([cnd, "-q", "-d", str(project), "umount"], env=_env(), check=True)
        unmounted = {"base": base,
                     f"`cnd exec -- true`, not mounted ({backend}): mounts and unmounts": [
                         *exec_true, "--backend", backend, "--", "true"]}
        got = compare(unmounted, "base", max(3, runs // 4))
        name = list(unmounted)[1]
        measured[name], counts[name] = got[name], file_syscalls(unmounted[name])
    bare = counts[next(iter(plain))]
    for name, m in measured.items():
        calls = counts.get(name)
        rows.append([name, m["wall"] * 1000, m["ratio"], calls if calls is not None else "n/a",
                     calls / bare if calls and bare else "n/a"])
    return ("## exec: what one `cnd exec` costs a rank (mount mode host)\n\n"
            f"cnd installed by pip into a venv of its own ({venv}); wall: median of {runs} interleaved runs "
            "per row and the median of its pairwise ratios to `python -c pass`; file-system calls: "
            "`strace -f -e trace=%file`, one line per call (the child `true` included), PATH=" + JOB_PATH + ".\n\n"
            + table(["what", "wall ms", "x python -c pass", "file syscalls", "x python -c pass"], rows) + "\n"
            + _breakdown_text(split))


def _breakdown_text(split: list[list] | None) -> str:
    if split is None:
        return ""
    rows = [[what, n, f"{ratio:.2f}"] for what, n, ratio in split]
    return ("\n### Where a mounted exec's file-system calls go\n\n"
            "One `strace -f -e trace=%file` of each command, split by process and by the first call that "
            "touches the project's condainer.yml.\n\n"
            + table(["part", "file syscalls", "x python -c pass"], rows) + "\n")
