"""`cnd exec`, `cnd mount` and `cnd umount` for a project, sharing one mount per node.

Every change to the mount happens under the node's session lock (see sessions.py): the first exec
mounts, the others reuse the mount, and the last one unmounts unless an explicit `cnd mount` pinned it.
A stale mount (daemon killed with its job step) and entries of killed execs are cleaned on the way.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from condainer import console, mounts, reaper, slurm
from condainer.activation import activated_environ
from condainer.backends.mount import check_image_file, mount
from condainer.dryrun import Actions
from condainer.errors import CondainerError, MountError
from condainer.project import Project
from condainer.safedir import ensure_private_dir
from condainer.sessions import NodeSessions

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def _ensure_mounted(project: Project, sessions: NodeSessions, backend: str) -> bool:
    """Mount the project's image unless it is mounted (cleaning a stale mount first); call under lock.
    Returns True when this call made the mount."""
    mp = project.mountpoint
    mounts.refuse_other_users_mount(mp)
    current = mounts.state(mp)
    if current == "mounted":
        return False
    if current == "stale":
        console.info(f"cleaning a stale mount at {mp} (its FUSE daemon died)")
        mounts.unmount(mp, lazy=True)
        sessions.log_unmount("stale-cleaned")
    ensure_private_dir(mp, what="mount point")
    started = time.monotonic()
    used = mount(project.image, mp, backend=backend)
    sessions.log_mount(used, time.monotonic() - started)
    return True


def mount_project(directory: Path, *, backend: str | None = None, dryrun: bool = False) -> Path:
    """`cnd mount`: mount (if needed) and pin, so execs ending leave it mounted."""
    project = Project.load(directory)
    check_image_file(project.image)
    backend = backend or project.cfg.get("backend", "auto")
    sessions = NodeSessions(project.state_dir)
    if dryrun:
        Actions(True).do(f"mount {project.image} at {project.mountpoint} ({backend} backend) unless mounted", lambda: None)
        return project.mountpoint
    with sessions.locked():
        made = _ensure_mounted(project, sessions, backend)
        sessions.pin(True)
    console.info(("mounted" if made else "already mounted:") + f" {project.image.name} at {project.mountpoint}")
    console.info(f"activate with `source {project.activate_script}`, unmount with `cnd umount`")
    return project.mountpoint


def umount_project(directory: Path, *, dryrun: bool = False) -> None:
    """`cnd umount`: refuse while execs run or the mount is busy; clean a stale mount."""
    project = Project.load(directory)
    mp = project.mountpoint
    if dryrun:
        Actions(True).do(f"unmount {mp} if mounted and no exec is running", lambda: None)
        return
    if mounts.find_mount(mp) is None and not project.state_dir.is_dir():
        console.info(f"{mp} is not mounted")  # never used on this node: nothing to unpin either
        return
    sessions = NodeSessions(project.state_dir)
    with sessions.locked():
        running = sessions.active()
        current = mounts.state(mp)
        if current == "unmounted":
            sessions.pin(False)
            console.info(f"{mp} is not mounted")
            return
        if running and current == "mounted":
            raise MountError(f"{mp} is in use by {len(running)} running `cnd exec` (pids {', '.join(map(str, running[:5]))})")
        mounts.unmount(mp, lazy=current == "stale")
        sessions.log_unmount("umount")
        sessions.pin(False)
    console.info(f"unmounted {mp}" + (" (stale mount cleaned)" if current == "stale" else ""))


def _release(project: Project, sessions: NodeSessions, pid: int) -> None:
    """Drop this exec; the last one out unmounts, unless pinned, still busy, or (under Slurm) tasks of
    this or another job step using the mount still run on this node."""
    step = slurm.current_step()
    with sessions.locked():
        sessions.remove(pid)
        step_over = sessions.step_done(step[0], step[2], step[1]) if step else True
        if sessions.active() or sessions.pinned:
            return
        if not step_over:
            if slurm.other_step_processes(step[0]):
                # Tasks of this job step still run here and may start an exec: keep the mount, and
                # let a watcher unmount once the step is over on this node (they may never call cnd).
                reaper.start(project.directory, step[0])
                return
            sessions.forget_step(step[0])  # the other tasks ended without running cnd
        for other in sessions.open_steps():
            # Another job step that used this mount here (overlapping steps) may still be running
            # between two execs of its tasks: it keeps the mount; a step with no process left is over.
            if step and other == step[0]:
                continue
            if slurm.other_step_processes(other):
                reaper.start(project.directory, other)
                return
            sessions.forget_step(other)
        mp = project.mountpoint
        current = mounts.state(mp)
        if current == "unmounted":
            return
        try:
            mounts.unmount(mp, lazy=current == "stale")
            sessions.log_unmount("last-task")
        except MountError as exc:
            # Someone outside cnd (a shell cd'ed into it) still uses it: leave it mounted.
            console.info(f"left {mp} mounted: {exc.message}")


def _terminal_delivers_sigint() -> bool:
    """True when we are in the terminal's foreground process group (so is the child)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def _run_child(argv: list[str], env: dict[str, str]) -> int:
    """Run ARGV, forwarding signals to it; returns its exit code the way a shell reports it."""
    try:
        child = subprocess.Popen(argv, env=env)
    except FileNotFoundError:
        raise CondainerError(f"command not found: {argv[0]}", exit_code=127) from None
    except PermissionError:
        raise CondainerError(f"permission denied: {argv[0]}", exit_code=126) from None

    def forward(signum, _frame):
        if signum == signal.SIGINT and _terminal_delivers_sigint():
            return  # Ctrl-C reached the child from the terminal already; a second one would be wrong
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in FORWARDED_SIGNALS}
    try:
        while True:
            try:
                code = child.wait()
                break
            except InterruptedError:
                continue
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 128 - code if code < 0 else code


def exec_command(directory: Path, argv: list[str], *, backend: str | None = None, dryrun: bool = False) -> int:
    """`cnd exec -- CMD...`: run CMD inside the activated environment; returns CMD's exit code."""
    if not argv:
        raise CondainerError("no command given: use `cnd exec -- CMD [ARGS...]`", exit_code=2)
    project = Project.load(directory)
    check_image_file(project.image)
    backend = backend or project.cfg.get("backend", "auto")
    if dryrun:
        actions = Actions(True)
        actions.do(f"mount {project.image} at {project.mountpoint} ({backend} backend) unless mounted", lambda: None)
        actions.do(f"run {' '.join(argv)} with {project.env_prefix}/bin first on PATH", lambda: None)
        actions.do(f"unmount {project.mountpoint} if this is the last exec on the node", lambda: None)
        return 0
    sessions = NodeSessions(project.state_dir)
    pid = os.getpid()
    with sessions.locked():
        sessions.active()  # prune entries of execs that were killed
        _ensure_mounted(project, sessions, backend)
        sessions.add(pid)
    try:
        env = activated_environ(project.env_prefix)
        if os.sep not in argv[0] and shutil.which(argv[0], path=env["PATH"]) is None:
            raise CondainerError(f"command not found: {argv[0]}", exit_code=127)
        return _run_child(argv, env)
    finally:
        _release(project, sessions, pid)
