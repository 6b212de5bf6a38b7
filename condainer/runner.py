"""`cnd exec`, `cnd mount` and `cnd umount` for a project, sharing one mount per node.

Every change to the mount happens under the node's session lock (see sessions.py): the first exec
mounts, the others reuse the mount, and the last one unmounts unless an explicit `cnd mount` pinned it.
A stale mount (daemon killed with its job step) and entries of killed execs are cleaned on the way.

`cnd exec` runs on every rank of a job, so what an exec does while the image is mounted imports only
small standard-library modules: the project's layout comes from layout.py's cache (no PyYAML), the
command is started with posix_spawn (no subprocess), and the mount machinery, Slurm's rules and the
watcher are imported only when they are needed.
"""

import os
import time

from condainer import mounts
from condainer.activation import activated_environ
from condainer.errors import CondainerError, MountError
from condainer.layout import Layout, cached
from condainer.sessions import NodeSessions

try:
    # The C half of `signal`: signal.py builds enums at import, which costs more than all of exec.
    import _signal as signal
except ImportError:  # pragma: no cover - an interpreter without it
    import signal  # type: ignore[no-redef]

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
# Python ignores these; a command must start with the defaults (as subprocess's restore_signals does).
_DEFAULT_IN_CHILD = (signal.SIGPIPE, signal.SIGXFSZ)


def load_layout(directory: os.PathLike | str, *, dryrun: bool = False) -> Layout:
    """The project's layout: from the cache beside condainer.yml while it matches the file byte for
    byte, else from a full load of condainer.yml (which writes the cache, except in a dry run)."""
    directory = os.path.abspath(directory)
    layout = cached(directory)
    if layout is None:
        from condainer.project import Project

        layout = Project.load(directory, remember_for_exec=not dryrun).layout
    return layout


def _info(message: str) -> None:
    from condainer import console

    console.info(message)


def _ensure_mounted(layout: Layout, sessions: NodeSessions, backend: str) -> bool:
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
    from condainer.safedir import ensure_private_dir

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
    from condainer.safedir import remove_private_dir

    remove_private_dir(layout.mountpoint)
    sessions.remove_if_idle()


def _dry_run(*actions: str) -> None:
    from condainer.dryrun import Actions

    printer = Actions(True)
    for action in actions:
        printer.do(action, lambda: None)


def _dry_run_image_check(image: str) -> None:
    """A dry run says what it would do even before `cnd build`: a missing image is a warning."""
    from condainer.backends.mount import check_image_file
    from condainer.errors import ImageError

    try:
        check_image_file(image)
    except ImageError as exc:
        import sys

        print(f"cnd: warning: {exc.message} (a real run fails here)", file=sys.stderr)


def mount_project(directory: os.PathLike | str, *, backend: str | None = None, dryrun: bool = False) -> str:
    """`cnd mount`: mount (if needed) and pin, so execs ending leave it mounted. Like exec, it is
    cheap when the image is mounted already (`source ./activate` in every job script)."""
    layout = load_layout(directory, dryrun=dryrun)
    backend = backend or layout.backend
    if dryrun:
        _dry_run_image_check(layout.image)
        _dry_run(f"mount {layout.image} at {layout.mountpoint} ({backend} backend) unless mounted")
        return layout.mountpoint
    sessions = NodeSessions(layout.state_dir, layout.uuid)
    with sessions.locked():
        made = _ensure_mounted(layout, sessions, backend)
        sessions.pin(True)
    _info(("mounted" if made else "already mounted:") + f" {os.path.basename(layout.image)} at {layout.mountpoint}")
    _info(f"activate with `source {os.path.join(layout.directory, 'activate')}`, unmount with `cnd umount`")
    return layout.mountpoint


def umount_project(directory: os.PathLike | str, *, dryrun: bool = False) -> None:
    """`cnd umount`: refuse while execs run or the mount is busy; clean a stale mount."""
    layout = load_layout(directory, dryrun=dryrun)
    mp = layout.mountpoint
    if dryrun:
        _dry_run(f"unmount {mp} if mounted and no exec is running")
        return
    from condainer import private_mount

    holder = private_mount.ask_to_retire(layout)
    if holder is not None:
        _info(f"the private mount of pid {holder} takes no new commands and ends with its last one")
    if mounts.find_mount(mp) is None and not os.path.isdir(layout.state_dir):
        _info(f"{mp} is not mounted")  # never used on this node: nothing to unpin either
        return
    sessions = NodeSessions(layout.state_dir, layout.uuid)
    with sessions.locked():
        running = sessions.active()
        current = mounts.state(mp)
        if current == "unmounted":
            sessions.pin(False)
            tidy_node(layout, sessions)
            _info(f"{mp} is not mounted")
            return
        if running and current == "mounted":
            raise MountError(f"{mp} is in use by {len(running)} running `cnd exec` (pids {', '.join(map(str, running[:5]))})")
        mounts.unmount(mp, lazy=current == "stale")
        sessions.log_unmount("umount")
        sessions.pin(False)
        tidy_node(layout, sessions)
    _info(f"unmounted {mp}" + (" (stale mount cleaned)" if current == "stale" else ""))


def _release(layout: Layout, sessions: NodeSessions, pid: int) -> None:
    """Drop this exec; the last one out unmounts, unless pinned, still busy, or (under Slurm) tasks of
    this or another job step using the mount still run on this node."""
    step = None
    if "SLURM_JOB_ID" in os.environ:  # Slurm's rules are imported only inside a job
        from condainer import slurm

        step = slurm.current_step()
    with sessions.locked():
        sessions.remove(pid)
        step_over = sessions.step_done(step[0], step[2], step[1]) if step else True
        if sessions.active() or sessions.pinned:
            return
        from condainer import reaper, slurm  # the last exec on the node only: Slurm's step rules

        if not step_over:
            if slurm.other_step_processes(step[0]):
                # Tasks of this job step still run here and may start an exec: keep the mount, and
                # let a watcher unmount once the step is over on this node (they may never call cnd).
                reaper.start(layout.directory, step[0])
                return
            sessions.forget_step(step[0])  # the other tasks ended without running cnd
        for other in sessions.open_steps():
            # Another job step that used this mount here (overlapping steps) may still be running
            # between two execs of its tasks: it keeps the mount; a step with no process left is over.
            if step and other == step[0]:
                continue
            if slurm.other_step_processes(other):
                reaper.start(layout.directory, other)
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


def find_command(name: str, path: str) -> str:
    """NAME as the child will be started: searched in PATH (the activated one) unless it holds a
    slash; a one-line error with the shell's exit code 127 when it is nowhere."""
    if os.sep in name:
        return name
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    raise CondainerError(f"command not found: {name}", exit_code=127)


def _run_child(executable: str, argv: list[str], env: dict[str, str]) -> int:
    """Run ARGV (EXECUTABLE resolved), forwarding signals to it; returns its exit code the way a shell
    reports it. The child inherits our standard streams and every descriptor we were given."""
    child: list[int] = []
    pending: list[int] = []

    def forward(signum, _frame):
        if signum == signal.SIGINT and _terminal_delivers_sigint():
            return  # Ctrl-C reached the child from the terminal already; a second one would be wrong
        if not child:
            pending.append(signum)  # arrived while the child was being started
            return
        try:
            os.kill(child[0], signum)
        except ProcessLookupError:
            pass

    # Handlers first, then the child: a signal in between is delivered once the child exists.
    previous = {s: signal.signal(s, forward) for s in FORWARDED_SIGNALS}
    try:
        try:
            child.append(os.posix_spawn(executable, argv, env, setsigdef=_DEFAULT_IN_CHILD))
        except OSError as exc:
            raise _cannot_start(argv[0], exc) from None
        for signum in pending:
            forward(signum, None)
        _, status = os.waitpid(child[0], 0)  # retried by Python when a handler interrupts it
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _replace_with(executable: str, argv: list[str], env: dict[str, str]) -> None:
    """Become the command (execve): signals, exit code, terminal and descriptors are then its own,
    with nothing in between. SIGPIPE and SIGXFSZ go back to their defaults, which Python changed."""
    for signum in _DEFAULT_IN_CHILD:
        signal.signal(signum, signal.SIG_DFL)
    try:
        os.execve(executable, argv, env)
    except OSError as exc:
        raise _cannot_start(argv[0], exc) from None


def _cannot_start(name: str, exc: OSError) -> CondainerError:
    """The one-line error, with the shell's exit code (127 not found, 126 not runnable)."""
    if isinstance(exc, FileNotFoundError):
        return CondainerError(f"command not found: {name}", exit_code=127)
    if isinstance(exc, PermissionError):
        return CondainerError(f"permission denied: {name}", exit_code=126)
    return CondainerError(f"cannot execute {name}: {exc.strerror}", exit_code=126)


def exec_command(directory: os.PathLike | str, argv: list[str], *, backend: str | None = None,
                 dryrun: bool = False, mount_mode: str | None = None) -> int:
    """`cnd exec -- CMD...`: run CMD inside the activated environment; returns CMD's exit code (in a
    private namespace, this process becomes CMD and never returns)."""
    if not argv:
        raise CondainerError("no command given: use `cnd exec -- CMD [ARGS...]`", exit_code=2)
    layout = load_layout(directory, dryrun=dryrun)
    backend = backend or layout.backend
    if dryrun:
        _dry_run_image_check(layout.image)
        _dry_run(f"mount {layout.image} at {layout.mountpoint} ({backend} backend) unless mounted",
                 f"run {' '.join(argv)} with {layout.env_prefix}/bin first on PATH",
                 f"unmount {layout.mountpoint} if this is the last exec on the node")
        return 0
    if _enter_private_mount(layout, backend, mount_mode):
        env = activated_environ(layout.env_prefix)
        _replace_with(find_command(argv[0], env.get("PATH", "")), argv, env)
    sessions = NodeSessions(layout.state_dir, layout.uuid)
    pid = os.getpid()
    with sessions.locked():
        _ensure_mounted(layout, sessions, backend)
        sessions.add(pid)
    try:
        env = activated_environ(layout.env_prefix)
        executable = find_command(argv[0], env.get("PATH", ""))
        return _run_child(executable, argv, env)
    finally:
        _release(layout, sessions, pid)


def _enter_private_mount(layout: Layout, backend: str, requested: str | None) -> bool:
    """Join (or start) the project's private mount unless the mode is host; False means: use the
    host's mount table (private_mount.choose_mode has the rules). Probed only when no holder runs."""
    from condainer import private_mount

    wanted = private_mount.requested_mode(requested, layout.mount_mode)
    try:
        if wanted[0] == "host":
            return False
        if wanted[0] == "namespace":
            reason = private_mount.problem() if private_mount.current(layout) is None else None
            if reason:
                raise MountError(f"cannot mount in a private namespace ({wanted[1]}): {reason}")
        return private_mount.enter(layout, backend, probe=wanted[0] == "auto")
    finally:
        private_mount.starter_done(layout)


class mounted:  # noqa: N801 - used as `with mounted(dir) as layout:`, like a function
    """Hold the project's image mounted the way one `cnd exec` does, for commands that read the
    image: `cnd launchers`, `cnd kernel install`. In a private namespace this process joins it
    (for good: it ends with the command); on the host it counts as a user of the mount."""

    def __init__(self, directory: os.PathLike | str, *, backend: str | None = None) -> None:
        self.layout = load_layout(directory)
        self.sessions = NodeSessions(self.layout.state_dir, self.layout.uuid)
        self.backend = backend or self.layout.backend
        self.host = True

    def __enter__(self) -> Layout:
        if _enter_private_mount(self.layout, self.backend, None):
            self.host = False
            return self.layout
        with self.sessions.locked():
            _ensure_mounted(self.layout, self.sessions, self.backend)
            self.sessions.add(os.getpid())
        return self.layout

    def __exit__(self, *exc: object) -> None:
        if self.host:
            _release(self.layout, self.sessions, os.getpid())
