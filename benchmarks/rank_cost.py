"""What a rank pays once the node's mount exists, in both mount modes.

Rows: a launcher (`<project>/bin/python -c pass`) and `cnd exec -- python -c pass`, in a private
namespace that exists (a process of the same user keeps it) and on a host mount, against the
environment's own python started by path on a host mount (`<env>/bin/python -c pass`). cnd is the
pip-installed one of exec_cost.user_venv(); commands run from a node-local directory with a plain job
PATH. Wall: medians of interleaved runs and the median of the pairwise ratios. File-system calls:
`strace -f -e trace=%file`, split into node-local ones (/tmp: the mount point and mount base,
/dev/shm, /proc, /sys, /dev, the system's /usr, /lib, /etc, /bin) and the rest, which on a cluster
land on the parallel file system: the project directory, cnd's installation and its Python.
The same split of `python -c 'import numpy'` started from an unpacked environment gives the figures
README multiplies for a job of N nodes x R ranks.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import progress, table
from benchmarks.exec_cost import JOB_PATH, traced_calls

IMPORT = "import numpy"  # what a rank of a real job does first
LOCAL = ("/tmp/", "/dev/", "/proc/", "/sys/", "/usr/", "/lib", "/etc/", "/bin/", "/sbin/", "/selinux", "/run/")


def _env(mode: str | None, cwd: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CONDAINER_MOUNT_MODE")}
    env.update(PATH=JOB_PATH, PWD=cwd)
    if mode:
        env["CONDAINER_MOUNT_MODE"] = mode
    return env


def _wall(cmd: list[str], env: dict[str, str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def split_calls(cmd: list[str], env: dict[str, str], cwd: str, shared: tuple[str, ...],
                local: tuple[str, ...] = ()) -> tuple[int, int, int]:
    """(all, node-local, on the shared file system) file-system calls of CMD and its children;
    LOCAL: more node-local paths (the mount point, wherever the mount base is)."""
    saved = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        calls = traced_calls(cmd) or []
    finally:
        os.environ.clear()
        os.environ.update(saved[0])
        os.chdir(saved[1])
    remote = 0
    for _, call in calls:
        path = call.split('"')[1] if call.count('"') >= 2 else ""
        if local and path.startswith(local):
            continue
        if path.startswith(shared) or (path.startswith("/") and not path.startswith(LOCAL)):
            remote += 1
    return len(calls), len(calls) - remote, remote


def _measure(variants: dict[str, tuple[list[str], str | None]], baseline: str, runs: int, cwd: str,
             shared: tuple[str, ...], local: tuple[str, ...]) -> list[list]:
    samples: dict[str, list[float]] = {name: [] for name in variants}
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    for cmd, mode in variants.values():  # warm caches
        _wall(cmd, _env(mode, cwd), cwd)
    base_cmd, base_mode = variants[baseline]
    for _ in range(runs):
        for name, (cmd, mode) in variants.items():
            if name == baseline:
                continue
            base = _wall(base_cmd, _env(base_mode, cwd), cwd)
            seconds = _wall(cmd, _env(mode, cwd), cwd)
            samples[baseline].append(base)
            samples[name].append(seconds)
            ratios[name].append(seconds / base)
    rows = []
    for name, (cmd, mode) in variants.items():
        total, here, remote = split_calls(cmd, _env(mode, cwd), cwd, shared, local)
        rows.append([name, statistics.median(samples[name]) * 1000,
                     f"{statistics.median(ratios[name]) if ratios[name] else 1.0:.3f}", total, here, remote])
    return rows


def _wait_no_holder(record_dir: Path, uuid: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not record_dir.is_dir() or not [p for p in record_dir.glob(f"{uuid}-*") if p.suffix != ".lock"]:
            return
        time.sleep(0.1)


def run(project: Path, venv: Path, runs: int, unpacked: Path | None = None) -> str:
    """The table of per-rank costs for PROJECT (markdown), whose image holds the Python environment
    UNPACKED (with numpy)."""
    from condainer.node.records import registry_dir

    cnd = str(venv / "bin" / "cnd")
    work = tempfile.mkdtemp(prefix="rank-cost-", dir="/tmp")  # a node-local working directory
    shared = (str(project), str(venv), os.path.realpath(str(venv / "bin" / "python")).rsplit("/bin/", 1)[0])
    host_env = _env("host", work)
    subprocess.run([cnd, "-q", "-d", str(project), "launchers"], env=host_env, check=True)
    mp = subprocess.run([cnd, "-q", "-d", str(project), "mount", "-p"], env=host_env, check=True,
                        capture_output=True, text=True).stdout.strip()  # the baseline's mount, on the host
    uuid = os.path.basename(mp).removeprefix("condainer-")
    launcher = str(project / "bin" / "python")
    env_python = f"{mp}/bin/python"
    keeper = None
    try:
        progress("rank cost: namespace mode")
        keeper = subprocess.Popen([launcher, "-c", "import time; print('up', flush=True); time.sleep(3600)"],
                                  env=_env(None, work), cwd=work, stdout=subprocess.PIPE, text=True)
        keeper.stdout.readline()
        ns = _measure({"`<env>/bin/python -c pass` (host mount)": ([env_python, "-c", "pass"], None),
                       "launcher `<project>/bin/python -c pass`, namespace": ([launcher, "-c", "pass"], None),
                       "`cnd exec -- python -c pass`, namespace": (
                           [cnd, "-q", "-d", str(project), "exec", "--", "python", "-c", "pass"], None)},
                      "`<env>/bin/python -c pass` (host mount)", runs, work, shared, (mp,))
        mounted_numpy = [[f"`python -c '{IMPORT}'` through the launcher, namespace (after the first rank)",
                          *split_calls([launcher, "-c", IMPORT], _env(None, work), work, shared, (mp,))]]
        keeper.send_signal(signal.SIGKILL)
        keeper.wait()
        keeper = None
        _wait_no_holder(Path(registry_dir()), uuid)
        progress("rank cost: host mode")
        host = _measure({"`<env>/bin/python -c pass` (host mount)": ([env_python, "-c", "pass"], None),
                         "launcher `<project>/bin/python -c pass`, host": ([launcher, "-c", "pass"], "host"),
                         "`cnd exec -- python -c pass`, host": (
                             [cnd, "-q", "-d", str(project), "exec", "--", "python", "-c", "pass"], "host")},
                        "`<env>/bin/python -c pass` (host mount)", runs, work, shared, (mp,))
        plain = []
        if unpacked is not None:
            plain = [[f"`python -c '{IMPORT}'`, environment unpacked on the shared file system",
                      *split_calls([str(unpacked / "bin" / "python"), "-c", IMPORT], _env(None, work),
                                   work, (*shared, str(unpacked)), (mp,))]]
    finally:
        if keeper is not None:
            keeper.kill()
        subprocess.run([cnd, "-q", "-d", str(project), "umount"], env=host_env)
        shutil.rmtree(work, ignore_errors=True)
    rows = [ns[0], *ns[1:], *host[1:]]
    text = ("## exec: what a rank pays once the node's mount exists, both mount modes\n\n"
            f"Median of {runs} interleaved runs per row, and the median of each row's pairwise ratios to the "
            "environment's python started by path on a host mount; file-system calls by `strace -f -e "
            "trace=%file`, split into node-local ones and those on the paths a cluster keeps on its parallel "
            "file system (the project directory, cnd's venv and the Python it is based on). In namespace mode "
            "another process of the user keeps the node's namespace, as the ranks of a step do for each other.\n\n"
            + table(["what", "wall ms", "x env python", "file calls", "node-local", "shared file system"],
                    rows) + "\n")
    if plain or mounted_numpy:
        text += ("\n`import numpy` per rank, the same split:\n\n"
                 + table(["what", "file calls", "node-local", "shared file system"], [*plain, *mounted_numpy])
                 + "\n")
    return text
