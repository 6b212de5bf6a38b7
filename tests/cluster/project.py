"""The condainer project the cluster tests and benchmarks/cluster.py run: pip, requirements.txt: six."""

from __future__ import annotations

import functools
import importlib.util
import os
import pathlib
import shlex
import subprocess
import sys

from .slurm import Node

# The interpreter running the tests (the main checkout's .venv) with PYTHONPATH pointing at this tree
# (tests/conftest.py): srun exports the environment, so every rank runs the condainer under test.
# CONDAINER_TEST_CND replaces that command (e.g. "/path/to/cnd" to test an installed cnd).
CND = shlex.split(os.environ.get("CONDAINER_TEST_CND", "")) or [sys.executable, "-m", "condainer"]


def cnd_commands() -> set[str]:
    """The sub-commands `cnd --help` lists."""
    out = subprocess.run([*CND, "--help"], capture_output=True, text=True, timeout=60).stdout
    commands, in_list = set(), False
    for line in out.splitlines():
        if line.strip().lower().startswith("commands"):
            in_list = True
        elif in_list and line.startswith("  ") and line.strip():
            commands.add(line.split()[0])
    return commands


@functools.cache
def _exec_help() -> str:
    return subprocess.run([*CND, "exec", "--help"], capture_output=True, text=True, timeout=60).stdout


def exec_backends() -> list[str]:
    """Backends `cnd exec` can use: ["native", "python"] once --backend and the Python FUSE reader exist."""
    if "--backend" not in _exec_help() or importlib.util.find_spec("condainer.fs.fuse") is None:
        return ["native"]
    return ["native", "python"]


def cnd_exec(backend: str, *command: str, directory: os.PathLike | None = None) -> list[str]:
    """`cnd [-d DIRECTORY] exec [--backend BACKEND] -- COMMAND` (--backend only where cnd has it)."""
    project = ["-d", str(directory)] if directory else []
    option = ["--backend", backend] if "--backend" in _exec_help() else []
    return [*CND, *project, "exec", *option, "--", *command]


def build_six_project(path: pathlib.Path, cnd: list[str] = CND) -> Project:
    """`cnd init`, a requirements.txt with six and no environment.yml (a venv of the host Python), `cnd build`."""
    path.mkdir(parents=True)
    _run_cnd(cnd, ["init"], path)
    (path / "requirements.txt").write_text("six\n")
    (path / "environment.yml").unlink(missing_ok=True)
    _run_cnd(cnd, ["build"], path)
    return Project(path)


def _run_cnd(cnd: list[str], args: list[str], cwd: pathlib.Path) -> None:
    result = subprocess.run([*cnd, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"cnd {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


class Project:
    """A built condainer project: its directory, uuid, and what a node shows of it (mount, state)."""

    def __init__(self, path: pathlib.Path):
        import yaml  # a dependency of condainer

        self.path = path
        config = yaml.safe_load((path / "condainer.yml").read_text())
        self.uuid = config["uuid"]
        self.mount_base = config.get("mount_base_directory") or "/tmp"
        self.mountpoint = f"{self.mount_base}/condainer-{self.uuid}"
        self.image = path / f"{self.uuid}.squashfs"

    def on_node(self, node: Node, inside: str) -> pathlib.Path:
        """A path as ``node`` sees it (its private /tmp), reached through /proc/<pid>/root of a process on the node."""
        return pathlib.Path(f"/proc/{node.pid}/root{inside}")

    def state_dirs(self, node: Node) -> list[pathlib.Path]:
        """cnd's per-node state directories of this project: <base>/.condainer-<uuid>-<uid>-<host>."""
        return sorted(self.on_node(node, self.mount_base).glob(f".condainer-{self.uuid}*"))

    def mount_log(self, node: Node) -> list[dict[str, str]]:
        """The mounts cnd made of this project on ``node``, one dict per line of the user's mounts.log
        (time, host, pid, step, uuid, ...): the log directory is shared by the nodes, as a home is."""
        from condainer.project.layout import log_dir

        log = pathlib.Path(log_dir()) / "mounts.log"
        entries = []
        if log.exists():
            for line in log.read_text().splitlines():
                time_, *fields = line.split()
                entry = {"time": time_, **dict(f.split("=", 1) for f in fields)}
                if entry.get("uuid") == self.uuid and entry.get("host") == node.name:
                    entries.append(entry)
        return entries

    def users(self, node: Node) -> list[str]:
        """Entries of cnd's per-node reference count (one per exec it believes is running)."""
        return [u.name for state in self.state_dirs(node) if (state / "users").is_dir()
                for u in (state / "users").iterdir()]

    def open_steps(self, node: Node) -> list[str]:
        """Slurm steps cnd still counts as having tasks to come on ``node`` (its steps/ directory)."""
        return [d.name for state in self.state_dirs(node) if (state / "steps").is_dir()
                for d in (state / "steps").iterdir()]

    def mounts(self, node: Node) -> list[str]:
        """Lines of ``node``'s mount table at this project's mount point."""
        return [line for line in node.mountinfo().splitlines() if line.split()[4] == self.mountpoint]

    def statvfs_error(self, node: Node) -> str | None:
        """What statvfs of the mount point says on ``node`` ("Transport endpoint..." when stale)."""
        result = subprocess.run(
            ["nsenter", "-t", str(node.pid), "-m", "python3", "-c", f"import os; os.statvfs({self.mountpoint!r})"],
            capture_output=True, text=True, timeout=30)
        return result.stderr.strip().splitlines()[-1] if result.returncode else None
