"""What the fs layer asks of the machine it runs on: how many CPUs this process may use (the writer's
compression threads), and where the system programs are that take a FUSE mount down.

condainer's own modules (sysinfo, mounts) use these definitions, so there is one rule for each.
Only os and math at load time: ``cnd exec`` reaches ``system_tool`` through condainer.mounts.
"""

from __future__ import annotations

import math
import os


def usable_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup CPU quota when one is set."""
    cpus = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, quota)) if quota else max(1, cpus)


def _cgroup_cpu_quota() -> int | None:
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: cpu.max = "<quota|max> <period>" on the path and above
            candidates = [("/sys/fs/cgroup" + path, "cpu.max")]
        elif "cpu" in controllers.split(","):
            candidates = [(f"/sys/fs/cgroup/{controllers}" + path, "cpu.cfs_quota_us")]
        else:
            continue
        for base, name in candidates:
            d = base.rstrip("/")
            while d.startswith("/sys/fs/cgroup"):
                limit = _read_quota(d, name)
                if limit:
                    limits.append(limit)
                d = os.path.dirname(d)
    return min(limits) if limits else None


def _read_quota(directory: str, name: str) -> int | None:
    try:
        with open(os.path.join(directory, name)) as f:
            text = f.read().split()
        if name == "cpu.max":
            if text[0] == "max":
                return None
            return math.ceil(int(text[0]) / int(text[1]))
        quota = int(text[0])
        if quota <= 0:
            return None
        with open(os.path.join(directory, "cpu.cfs_period_us")) as f:
            return math.ceil(quota / int(f.read()))
    except (OSError, ValueError, IndexError, ZeroDivisionError):
        return None


SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


def system_tool(name: str) -> str | None:
    """NAME on PATH, else in the system directories: a job's PATH may hold only a venv's bin, and a
    mount made must still come down."""
    import shutil

    return shutil.which(name) or shutil.which(name, path=SYSTEM_PATH)


def unmount_commands(fuse: bool, lazy: bool) -> list[list[str]]:
    """The commands that unmount a mount point (append it), to try in order: fusermount3 (else
    fusermount) for a FUSE mount, the only way for a user; umount as root, or when there is no
    fusermount. LAZY: detach now, free once unused."""
    commands = []
    if fuse:
        for name in ("fusermount3", "fusermount"):
            if tool := system_tool(name):
                commands.append([tool, "-u", "-z"] if lazy else [tool, "-u"])
                break
    umount = system_tool("umount")
    if umount and (os.geteuid() == 0 or not commands):
        commands.append([umount, "-l"] if lazy else [umount])
    return commands
