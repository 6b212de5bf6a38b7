"""What a Slurm job step tells its tasks: which step this is and how many of its tasks run on this node.

Ranks of one step do not all start `cnd exec` at the same moment: on a loaded node one rank may finish
before another has started. Knowing how many tasks of the step run here lets the mount stay until the
step's last local task is done, instead of being unmounted and mounted again in between.
"""

from __future__ import annotations

import os


def expand_hostlist(text: str) -> list[str]:
    """'n[1-3,7],login' -> ['n1', 'n2', 'n3', 'n7', 'login'] (Slurm's hostlist syntax, zero padding kept)."""
    hosts: list[str] = []
    depth, start = 0, 0
    parts = []
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    for part in filter(None, parts):
        open_at = part.find("[")
        close_at = part.find("]", open_at + 1)
        if open_at < 0 or close_at < 0:
            hosts.append(part)
            continue
        prefix, ranges, suffix = part[:open_at], part[open_at + 1 : close_at], part[close_at + 1 :]
        for item in ranges.split(","):
            lo, dash, hi = item.partition("-")
            if dash and lo.isdigit() and hi.isdigit():
                hosts += [f"{prefix}{n:0{len(lo)}d}{suffix}" for n in range(int(lo), int(hi) + 1)]
            else:
                hosts.append(f"{prefix}{item}{suffix}")
    return hosts


def expand_counts(text: str) -> list[int]:
    """'2(x3),1' -> [2, 2, 2, 1] (SLURM_STEP_TASKS_PER_NODE)."""
    counts: list[int] = []
    for item in text.split(","):
        count, paren, repeat = item.strip().partition("(x")
        if paren and repeat.endswith(")"):
            repeat = repeat[:-1]
        elif paren or repeat:
            raise ValueError(item)
        if not count.isdigit() or not (repeat.isdigit() if paren else True):
            raise ValueError(item)
        counts += [int(count)] * (int(repeat) if paren else 1)
    return counts


def current_step(environ: dict[str, str] | None = None) -> tuple[str, int, str] | None:
    """(step id, tasks of this step on this node, this task's local id), or None outside a step."""
    env = os.environ if environ is None else environ
    job, step, local = env.get("SLURM_JOB_ID"), env.get("SLURM_STEP_ID"), env.get("SLURM_LOCALID")
    per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
    if not (job and step and local and per_node):
        return None
    try:
        counts = expand_counts(per_node)
        index = None
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_NODELIST")
        name = env.get("SLURMD_NODENAME")
        if nodes and name:
            expanded = expand_hostlist(nodes)
            if name in expanded:
                index = expanded.index(name)
        if index is None:
            index = int(env.get("SLURM_NODEID", "0"))
        return f"{job}.{step}", counts[index], local
    except (ValueError, IndexError):
        return None


def _ancestors(pid: int) -> set[int]:
    """PID and its parents up to init: our own wrapper shell must not count as another task."""
    chain = set()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                data = fh.read()
            pid = int(data[data.rfind(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return chain


def other_step_processes(step: str) -> list[int]:
    """Pids on this node (that we may inspect) of job step STEP ('job.step'), except us and our parents.

    A task of the step that has not yet started `cnd exec`, or that never will, shows up here by the
    SLURM_JOB_ID / SLURM_STEP_ID in its environment; once none is left, the step is over on this node.
    """
    job, _, step_id = step.partition(".")
    want = (f"SLURM_JOB_ID={job}".encode(), f"SLURM_STEP_ID={step_id}".encode())
    mine = _ancestors(os.getpid())
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        if want[0] in env and want[1] in env:
            found.append(int(entry.name))
    return found
