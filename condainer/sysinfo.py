"""Facts about the machine this process runs on (CPUs it may use, host name)."""

from __future__ import annotations

import math
import os
import socket


def _cgroup_cpu_limit() -> int | None:
    """CPUs allowed by a cgroup v2 quota (cpu.max), if one is set."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.floor(int(quota) / int(period)))


def usable_cpus() -> int:
    """The CPUs this process may use: affinity mask, capped by a cgroup quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    return min(n, limit) if limit else n


def hostname() -> str:
    return socket.gethostname().split(".")[0]
