"""`cnd exec`, `cnd mount` and `cnd umount` for a project: which mount a command uses (the
user's private namespace, private_mount.py, or the node's own mount table, host_mount.py), and the
command started in it (command.py).

`cnd exec` runs on every rank of a job, so what an exec does while the image is mounted imports only
small standard-library modules: the project's layout comes from layout.py's cache (no PyYAML), the
command is started with posix_spawn or execve (no subprocess), and the mount machinery, Slurm's rules
and the watcher are imported only when they are needed.
"""

import os

from condainer.errors import CondainerError, MountError
from condainer.node import command
from condainer.node.activation import activated_environ
from condainer.node.sessions import NodeSessions
from condainer.project.layout import Layout, cached


def load_layout(directory: os.PathLike | str, *, dryrun: bool = False) -> Layout:
    """The project's layout: from the cache beside condainer.yml while it matches the file byte for
    byte, else from a full load of condainer.yml (which writes the cache, except in a dry run)."""
    directory = os.path.abspath(directory)
    layout = cached(directory)
    if layout is None:
        from condainer.project.directory import Project

        layout = Project.load(directory, remember_for_exec=not dryrun).layout
    return layout


def _info(message: str) -> None:
    from condainer import console

    console.info(message)


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
    backend = layout.backend_for(backend)
    if dryrun:
        _dry_run_image_check(layout.image)
        _dry_run(f"mount {layout.image} at {layout.mountpoint} ({backend} backend) unless mounted")
        return layout.mountpoint
    from condainer.node import host_mount

    sessions = NodeSessions(layout.state_dir, layout.uuid)
    with sessions.locked():
        made = host_mount.ensure_mounted(layout, sessions, backend)
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
    from condainer import mounts
    from condainer.node import host_mount, private_mount

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
            host_mount.tidy_node(layout, sessions)
            _info(f"{mp} is not mounted")
            return
        if running and current == "mounted":
            raise MountError(f"{mp} is in use by {len(running)} running `cnd exec` (pids {', '.join(map(str, running[:5]))})")
        mounts.unmount(mp, lazy=current == "stale")
        sessions.log_unmount("umount")
        sessions.pin(False)
        host_mount.tidy_node(layout, sessions)
    _info(f"unmounted {mp}" + (" (stale mount cleaned)" if current == "stale" else ""))


def exec_command(directory: os.PathLike | str, argv: list[str], *, backend: str | None = None,
                 dryrun: bool = False, mount_mode: str | None = None) -> int:
    """`cnd exec -- CMD...`: run CMD inside the activated environment; returns CMD's exit code (in a
    private namespace, this process becomes CMD and never returns)."""
    if not argv:
        raise CondainerError("no command given: use `cnd exec -- CMD [ARGS...]`", exit_code=2)
    layout = load_layout(directory, dryrun=dryrun)
    backend = layout.backend_for(backend)
    if dryrun:
        _dry_run_image_check(layout.image)
        _dry_run(f"mount {layout.image} at {layout.mountpoint} ({backend} backend) unless mounted",
                 f"run {' '.join(argv)} with {layout.env_prefix}/bin first on PATH",
                 f"unmount {layout.mountpoint} if this is the last exec on the node")
        return 0
    if _enter_private_mount(layout, backend, mount_mode):
        env = activated_environ(layout.env_prefix)
        command.replace_with(command.find_command(argv[0], env.get("PATH", "")), argv, env)
    from condainer.node import host_mount  # the node's own mount table: the rest of exec's path

    sessions = NodeSessions(layout.state_dir, layout.uuid)
    pid = os.getpid()
    with sessions.locked():
        host_mount.ensure_mounted(layout, sessions, backend)
        sessions.add(pid)
    try:
        env = activated_environ(layout.env_prefix)
        executable = command.find_command(argv[0], env.get("PATH", ""))
        return command.run_child(executable, argv, env)
    finally:
        host_mount.release(layout, sessions, pid)


def _enter_private_mount(layout: Layout, backend: str, requested: str | None) -> bool:
    """Join (or start) the project's private mount unless the mode is host; False means: use the
    host's mount table (mount_mode.py has the rules). Probed only when no holder runs."""
    from condainer.node import mount_mode

    wanted, source = mount_mode.requested_mode(requested, layout.mount_mode)
    if wanted == "host" and "CONDAINER_STARTING_FD" not in os.environ:
        return False  # nothing to join, and no launcher waits for us (private_mount.starter_done)
    from condainer.node import private_mount

    try:
        if wanted == "host":
            return False
        if wanted == "namespace":
            reason = mount_mode.problem() if private_mount.current(layout) is None else None
            if reason:
                raise MountError(f"cannot mount in a private namespace ({source}): {reason}")
        return private_mount.enter(layout, backend, probe=wanted == "auto")
    finally:
        private_mount.starter_done(layout)


class mounted:  # noqa: N801 - used as `with mounted(dir) as layout:`, like a function
    """Hold the project's image mounted the way one `cnd exec` does, for commands that read the
    image: `cnd launchers`, `cnd kernel install`. In a private namespace this process joins it
    (for good: it ends with the command); on the host it counts as a user of the mount."""

    def __init__(self, directory: os.PathLike | str, *, backend: str | None = None) -> None:
        self.layout = load_layout(directory)
        self.sessions = NodeSessions(self.layout.state_dir, self.layout.uuid)
        self.backend = self.layout.backend_for(backend)
        self.host = True

    def __enter__(self) -> Layout:
        if _enter_private_mount(self.layout, self.backend, None):
            self.host = False
            return self.layout
        from condainer.node import host_mount

        with self.sessions.locked():
            host_mount.ensure_mounted(self.layout, self.sessions, self.backend)
            self.sessions.add(os.getpid())
        return self.layout

    def __exit__(self, *exc: object) -> None:
        if self.host:
            from condainer.node import host_mount

            host_mount.release(self.layout, self.sessions, os.getpid())
