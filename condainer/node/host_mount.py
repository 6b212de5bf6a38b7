"""The image on the node's own mount table (host mode), shared by every `cnd exec` of the project on
the node: the first mounts, the others reuse the mount, the last one out unmounts unless `cnd mount`
pinned it or, under Slurm, tasks of a step that used it still run here (then a watcher, reaper.py,
unmounts once the step is over). Every change happens under the node's session lock (sessions.py);
a stale mount (daemon killed with its job step) and entries of killed execs are cleaned on the way.
"""

import os
import sys
import time

from condainer import mounts
from condainer.errors import MountError
from condainer.node.sessions import NodeSessions
from condainer.project.layout import Layout


def _info(message: str) -> None:
    from condainer import console

    console.info(message)


def ensure_mounted(layout: Layout, sessions: NodeSessions, backend: str) -> bool:
    """Mount the project's image unless it is mounted (cleaning a stale mount first); call under lock.
    Returns True when this call made the mount."""
    mp = layout.mountpoint
    try:
        current = mounts.state(mp, refuse_other_users=True)
    except MountError:
        if not sessions.active():
            sessions.remove_if_idle()  # refused: leave no state directory of ours behind
        raise
    if current == "mounted":
        return False
    from condainer.backends.mount import mount
    from condainer.node.safedir import ensure_private_dir

    try:
        if current == "stale":
            _info(f"cleaning a stale mount at {mp} (its FUSE daemon died)")
            mounts.unmount(mp, lazy=True)
            sessions.log_unmount("stale-cleaned")
        ensure_private_dir(mp, what="mount point")
        started = time.monotonic()
        used = mount(layout.image, mp, backend=backend)
    except BaseException:
        if not sessions.active() and mounts.find_mount(mp) is None:
            tidy_node(layout, sessions)  # the mount failed: leave nothing behind in /tmp
        raise
    sessions.log_mount(used, time.monotonic() - started)
    return True


def tidy_node(layout: Layout, sessions: NodeSessions) -> None:
    """Once unmounted: remove the empty mount point and, when idle, the state directory, so a shared
    node's /tmp keeps nothing of ours (call under the lock)."""
    from condainer.node.safedir import remove_private_dir

    remove_private_dir(layout.mountpoint)
    sessions.remove_if_idle()


def release(layout: Layout, sessions: NodeSessions, pid: int) -> None:
    """Drop this exec; the last one out unmounts, unless pinned, still busy, or (under Slurm) tasks of
    this or another job step using the mount still run on this node."""
    step = None
    if "SLURM_JOB_ID" in os.environ:  # Slurm's rules are imported only inside a job
        from condainer.node import slurm

        step = slurm.current_step()
    with sessions.locked():
        sessions.remove(pid)
        step_over = sessions.step_done(step[0], step[2], step[1]) if step else True
        if sessions.active() or sessions.pinned:
            return
        from condainer.node import slurm  # the last exec on the node only: Slurm's step rules

        if not step_over:
            if slurm.other_step_processes(step[0]):
                # Tasks of this job step still run here and may start an exec: keep the mount, and
                # let a watcher unmount once the step is over on this node (they may never call cnd).
                start_watcher(layout.directory, step[0])
                return
            sessions.forget_step(step[0])  # the other tasks ended without running cnd
        for other in sessions.open_steps():
            # Another job step that used this mount here (overlapping steps) may still be running
            # between two execs of its tasks: it keeps the mount; a step with no process left is over.
            if step and other == step[0]:
                continue
            if slurm.other_step_processes(other):
                start_watcher(layout.directory, other)
                return
            sessions.forget_step(other)
        mp = layout.mountpoint
        current = mounts.state(mp)
        if current != "unmounted":
            try:
                mounts.unmount(mp, lazy=current == "stale")
                sessions.log_unmount("last-task")
            except MountError as exc:
                # Someone outside cnd (a shell cd'ed into it) still uses it: leave it mounted.
                _info(f"left {mp} mounted: {exc.message}")
                return
        tidy_node(layout, sessions)



def start_watcher(project_dir: os.PathLike | str, step: str) -> None:
    """Start the watcher (reaper.py) that unmounts once STEP is over on this node, detached from our
    session and stdio."""
    import subprocess

    # Without the step's SLURM_* variables: a watcher is not a task of the step, and two watchers
    # (a step using two projects) must not wait for each other.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    subprocess.Popen(
        [sys.executable, "-m", "condainer.node.reaper", str(project_dir), step], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
    )
