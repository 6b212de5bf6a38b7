"""The mount table, unmounting, and stale-mount detection.

A FUSE daemon that died (SIGKILL at the end of a job step) leaves a mount whose root may still answer
``stat`` from the kernel's cache, while ``statvfs`` reaches the daemon and fails with ENOTCONN: that
is how a stale mount is told apart from a live one.

`cnd exec` asks for the state of its mount on every rank: the module imports only os and errno at
load time (subprocess and shutil only when something is unmounted).
"""

import errno
import os

from condainer.errors import MountError
from condainer.project.layout import read_file

MOUNTINFO = "/proc/self/mountinfo"


class MountEntry:
    """One line of /proc/self/mountinfo that matters to us (a plain class: dataclasses and typing
    cost more to import than this module does)."""

    __slots__ = ("mountpoint", "fstype", "source", "private_to")

    def __init__(self, mountpoint: str, fstype: str, source: str, private_to: int | None = None) -> None:
        self.mountpoint = mountpoint
        self.fstype = fstype  # e.g. "squashfs", "fuse.squashfuse_ll", "fuse.condainer"
        self.source = source
        # The uid a FUSE mount without allow_other serves: the kernel refuses every other user (root
        # included).  None when anyone may use it (kernel mounts, allow_other).
        self.private_to = private_to

    def __repr__(self) -> str:
        return f"MountEntry({self.mountpoint!r}, {self.fstype!r}, {self.source!r}, {self.private_to!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MountEntry) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__)


def _private_to(fstype: str, super_options: str) -> int | None:
    if not (fstype == "fuse" or fstype.startswith("fuse.")):
        return None
    options = super_options.split(",")
    if "allow_other" in options:
        return None
    for option in options:
        if option.startswith("user_id="):
            return int(option[len("user_id=") :])
    return None


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \040-style octal.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) + 1 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_table() -> list[MountEntry]:
    """Every mount this process can see."""
    data = read_file(MOUNTINFO)
    if data is None:
        raise MountError(f"cannot read {MOUNTINFO}")
    entries = []
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        super_options = fields[sep + 3] if len(fields) > sep + 3 else ""
        entries.append(
            MountEntry(
                _unescape(fields[4]),
                fields[sep + 1],
                _unescape(fields[sep + 2]),
                _private_to(fields[sep + 1], super_options),
            )
        )
    return entries


def find_mount(path: os.PathLike | str) -> MountEntry | None:
    """The topmost mount at exactly PATH, or None."""
    target = os.path.abspath(path)
    found = None
    for entry in mount_table():
        if entry.mountpoint == target:
            found = entry  # later lines are mounted on top of earlier ones
    return found


def is_fuse(entry: MountEntry) -> bool:
    return entry.fstype == "fuse" or entry.fstype.startswith("fuse.")


def other_users_mount(path: os.PathLike | str) -> int | None:
    """The uid of another user whose private FUSE mount sits at PATH (we cannot use it), or None."""
    entry = find_mount(path)
    if entry is None or entry.private_to is None or entry.private_to == os.geteuid():
        return None
    return entry.private_to


def refuse_other_users_mount(path: os.PathLike | str) -> None:
    """One clear line instead of EACCES deep inside: another user's FUSE mount is closed to us."""
    uid = other_users_mount(path)
    if uid is not None:
        raise MountError(
            f"{path} is mounted by another user (uid {uid}), and a FUSE mount serves only the user who "
            f"made it: wait until it is unmounted, or run on another node"
        )


def state(path: os.PathLike | str, *, refuse_other_users: bool = False) -> str:
    """'unmounted', 'mounted', or 'stale' (in the table, but its FUSE daemon is gone); with
    REFUSE_OTHER_USERS, another user's private FUSE mount there is a MountError (one read of the
    mount table for both questions)."""
    entry = find_mount(path)
    if entry is None:
        return "unmounted"
    if refuse_other_users and entry.private_to is not None and entry.private_to != os.geteuid():
        refuse_other_users_mount(path)
    try:
        os.statvfs(path)
    except OSError as exc:
        if exc.errno in (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO):
            return "stale"
        raise MountError(f"cannot query mount {path}: {exc.strerror}") from exc
    return "mounted"


def system_tool(name: str) -> str | None:
    """NAME on PATH, else in the system directories (condainer.fs.host's rule, imported only when a
    tool is looked for: `cnd exec` imports this module on every rank, and not condainer.fs)."""
    from condainer.fs.host import system_tool as find

    return find(name)


def _umount_commands(entry: MountEntry | None, lazy: bool) -> list[list[str]]:
    from condainer.fs.host import unmount_commands

    return unmount_commands(entry is None or is_fuse(entry), lazy)


def unmount(path: os.PathLike | str, *, lazy: bool = False) -> None:
    """Unmount PATH; a busy mount raises MountError unless ``lazy`` (detach now, free when unused)."""
    path = os.path.abspath(path)
    entry = find_mount(path)
    if entry is None:
        return
    if entry.private_to not in (None, os.geteuid()) and os.geteuid() != 0:
        raise MountError(f"cannot unmount {path}: it was mounted by another user (uid {entry.private_to})")
    import subprocess

    errors = []
    for command in _umount_commands(entry, lazy):
        result = subprocess.run([*command, path], capture_output=True, text=True)
        if result.returncode == 0 or find_mount(path) is None:
            return
        errors.append(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else command[0])
    message = "; ".join(errors) or "no unmount tool found (fusermount3, fusermount, umount)"
    if "busy" in message.lower():
        raise MountError(
            f"{path} is busy: a process still uses it (close shells and programs inside it, "
            f"or `source ./deactivate` in shells that activated it), then retry"
        )
    raise MountError(f"cannot unmount {path}: {message}")


def check_mountpoint(path: os.PathLike | str, *, must_be_empty: bool = True) -> os.PathLike[str]:
    """Refuse a mount point that is missing, not a directory, a symlink, not empty or already mounted."""
    from pathlib import Path

    p = Path(path).absolute()
    # Ask the mount table first: lstat on a stale mount fails with ENOTCONN.
    current = state(p)
    if current == "stale":
        raise MountError(f"{p} is a stale mount (its daemon died): run `cnd image umount {p}` first")
    if current == "mounted":
        raise MountError(f"{p} is already a mount point")
    if not os.path.lexists(p):
        raise MountError(f"mount point {p} does not exist")
    if p.is_symlink():
        raise MountError(f"mount point {p} is a symlink: refusing to mount there")
    if not p.is_dir():
        raise MountError(f"mount point {p} is not a directory")
    if must_be_empty:
        try:
            with os.scandir(p) as it:
                if next(it, None) is not None:
                    raise MountError(f"mount point {p} is not empty")
        except PermissionError as exc:
            raise MountError(f"mount point {p} is not readable: {exc.strerror}") from exc
    return p
