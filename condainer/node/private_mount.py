"""The image mounted in a private namespace of one user on one node, which commands join.

One *holder* process per node, user, project and Slurm job step (or per node, user and project
outside Slurm) creates a user and mount namespace (userns.py), mounts the image there at its path
with either FUSE backend, and records itself in a node-local *record*:
``/dev/shm/.condainer-<uid>/<uuid>-<host>[-<job>.<step>]``, one line ``PID START IMAGE-ID MOUNTPOINT``.
A command joins it (setns, or nsenter in a launcher's shell fast path) and then *is* the command:
no second process waits for it, signals and exit codes are its own.

Nothing of it shows in the host's mount table, another user of the node neither sees nor blocks
it, and it cannot outlive its users: the holder leaves once no process is in its namespace any
more (after LINGER seconds, so that back-to-back commands share it), and when the holder is
killed its daemon follows (PR_SET_PDEATHSIG); the kernel drops the mount with the last process.
The mount point directory on the host (the image's path, shared by every user of the project) is
held with a shared flock by each holder, and removed only by its owner, under an exclusive one.
"""

from __future__ import annotations

import os

from condainer.errors import MountError
from condainer.node.mount_mode import problem
from condainer.node.records import (
    Lock,
    Record,
    image_id,
    record_path,
    sweep_dead_records,
    unlink,
)
from condainer.project.layout import Layout


def current(layout: Layout) -> Record | None:
    """This node's live holder of the project for us (and this job step), or None."""
    record = Record.read(record_path(layout))
    return record if record is not None and record.alive() else None


def starter_done(layout: Layout) -> None:
    """A launcher that found no holder made ``RECORD.starting`` and holds a flock on it through the
    descriptor $CONDAINER_STARTING_FD, so that the launchers starting meanwhile wait for us instead
    of starting condainer too: now that the holder runs (or could not start), let them go."""
    fd = os.environ.pop("CONDAINER_STARTING_FD", None)
    if fd is None or not fd.isdigit():
        return
    marker = record_path(layout) + ".starting"
    try:
        held, there = os.fstat(int(fd)), os.stat(marker)
        if (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino):
            os.unlink(marker)
    except OSError:
        pass
    try:
        os.close(int(fd))
    except OSError:
        pass


def ask_to_retire(layout: Layout) -> int | None:
    """`cnd umount`: ask our holder of the project on this node to take no new users and to leave
    when its present ones are done (SIGUSR1); returns its pid, or None when there is none."""
    import signal

    record = current(layout)
    if record is None:
        return None
    try:
        os.kill(record.pid, signal.SIGUSR1)
    except ProcessLookupError:
        return None
    return record.pid


def enter(layout: Layout, backend: str, *, probe: bool = False) -> bool:
    """Join the project's private mount on this node, starting its holder if there is none (or
    only one of an older image); True once joined. With PROBE (mode auto), make sure first that
    private namespaces work here, and return False (use the host) when they do not. The caller
    must be single-threaded. A rank that finds a live holder imports and probes nothing more."""
    from condainer.node import userns

    path = record_path(layout)
    record = Record.read(path)
    if record is None or not _serves(record, layout):
        record = _holder_for(layout, backend, path, probe)
        if record is None:
            return False
    try:
        userns.join(record.pid)
    except OSError as exc:
        raise MountError(f"cannot join the private mount of {layout.image} (holder pid {record.pid}): "
                         f"{exc.strerror}") from None
    return True


def _serves(record: Record, layout: Layout) -> bool:
    """True when RECORD's holder is alive and mounts the project's image as it is now."""
    try:
        wanted = image_id(layout.image)
    except OSError:
        return False  # missing: the full check says so
    return record.image == wanted and record.mountpoint == layout.mountpoint and record.alive()


def _holder_for(layout: Layout, backend: str, path: str, probe: bool) -> Record | None:
    """The live holder of the current image, started under the record's lock unless another
    process started it while we waited (then nothing more is checked: the ranks of a step that
    wait for the first one cost little). With PROBE, None when private namespaces do not work."""
    if probe and not os.path.isdir(os.path.dirname(path)) and problem() is not None:
        return None  # the first start of this user on the node: namespaces may not work here at all
    sweep_dead_records(os.path.dirname(path))
    with Lock(path + ".lock"):
        record = Record.read(path)
        if record is not None and _serves(record, layout):
            return record
        if probe and problem() is not None:
            return None
        from condainer.backends.mount import check_image_file

        check_image_file(layout.image)
        if record is not None and record.alive():
            unlink(path)  # an older image: its holder serves its users, then leaves (retired)
        from condainer.node import holder

        record = holder.start(layout, backend, path, image_id(layout.image))
        if "CONDAINER_STARTING_FD" not in os.environ:
            unlink(path + ".starting")  # left by a launcher that was killed while it started us
        return record
