"""A small detached watcher that unmounts once a Slurm job step is over on this node.

Started by the last `cnd exec` of a step to leave while other tasks of the same step still run here
(they may start an exec later, or never): it polls until no process of the step is left, then does
what the last exec would have done: unmount, unless execs run or `cnd mount` pinned the mount.
"""

from __future__ import annotations

import os
import sys
import time

POLL_SECONDS = 0.5
MAX_SECONDS = 7 * 24 * 3600


def main(project_dir: str, step: str) -> int:
    from pathlib import Path

    from condainer import console, mounts
    from condainer.node import slurm
    from condainer.node.host_mount import start_watcher, tidy_node
    from condainer.node.runner import load_layout
    from condainer.node.sessions import NodeSessions

    console.set_quiet(True)
    layout = load_layout(project_dir)
    sessions = NodeSessions(layout.state_dir, layout.uuid)
    marker = Path(sessions.dir) / "steps" / f"{step}.reaper"
    with sessions.locked():
        if marker.exists():
            try:
                other = int(marker.read_text())
                if other != os.getpid() and os.path.exists(f"/proc/{other}"):
                    return 0  # one watcher per step is enough
            except ValueError:
                pass
        marker.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        marker.write_text(str(os.getpid()))
    deadline = time.monotonic() + MAX_SECONDS
    try:
        while slurm.other_step_processes(step) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        with sessions.locked():
            if sessions.active() or sessions.pinned:
                return 0
            for other in sessions.open_steps():
                if other != step and slurm.other_step_processes(other):
                    start_watcher(layout.directory, other)  # an overlapping step still runs: it decides
                    return 0
            state = mounts.state(layout.mountpoint)
            if state != "unmounted":
                try:
                    mounts.unmount(layout.mountpoint, lazy=state == "stale")
                    sessions.log_unmount("watcher")
                except Exception:
                    return 1
    finally:
        with sessions.locked():
            marker.unlink(missing_ok=True)
            sessions.forget_step(step)  # the step is over here
            if mounts.find_mount(layout.mountpoint) is None:
                tidy_node(layout, sessions)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
