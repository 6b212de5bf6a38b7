"""What both FUSE adapters tell the kernel and how they answer: one policy, read once.

The image never changes, so the kernel may cache everything; this module is the one place that says
how (timeouts, capabilities, mount options), how a node looks to stat() and readdir (attributes,
``.`` and ``..``), who may access what (the kernel's permission rule), how errors become errnos
(damage is EIO plus one log line), and which ``CONDAINER_FUSE_*`` switches the daemon obeys.  The
low-level adapter (lowlevel.py) and the high-level one (highlevel.py) differ only in how they talk
to libfuse.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import stat
import threading
from collections.abc import Mapping
from typing import Any

from condainer.fs.reader import DamagedImage, Inode

log = logging.getLogger("condainer.fuse")

SUBTYPE = "condainer"  # mountinfo shows fstype "fuse.condainer"
TIMEOUT = 86400.0  # seconds the kernel may trust an entry, an attribute or a failed lookup
BLKSIZE = 128 * 1024  # st_blksize: invites applications to read in large chunks

FUSE_CAP_READDIRPLUS = 1 << 13
FUSE_CAP_READDIRPLUS_AUTO = 1 << 14
FUSE_CAP_CACHE_SYMLINKS = 1 << 23


@dataclasses.dataclass(frozen=True)
class FuseSettings:
    """The daemon's environment switches, read once at start (choices measured by request counts,
    see benchmarks/fuse_requests.py; the switches exist for re-measuring and for tests)."""

    api: str | None = None  # CONDAINER_FUSE_API=low|high: force an adapter (default: by libfuse version)
    threads: bool = True  # CONDAINER_FUSE_THREADS=0: serve single-threaded (low-level adapter)
    profile: str | None = None  # CONDAINER_FUSE_PROFILE=FILE: cProfile the low-level loop into FILE
    zero_message_open: bool = True  # CONDAINER_FUSE_OPEN=handle: answer OPEN with a handle (high-level)
    stats: bool = False  # CONDAINER_FUSE_STATS=1: count requests, log the counts at unmount
    trace: bool = False  # CONDAINER_FUSE_TRACE=1 (with STATS): log every counted request (high-level)
    # CONDAINER_FUSE_DEFAULT_PERMISSIONS=0: mount without default_permissions, so that access(2) and
    # chdir reach the daemon's access handler (to test that path).
    default_permissions: bool = True

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> FuseSettings:
        api = environ.get("CONDAINER_FUSE_API")
        return cls(
            api=api if api in ("low", "high") else None,
            threads=environ.get("CONDAINER_FUSE_THREADS", "1") != "0",
            profile=environ.get("CONDAINER_FUSE_PROFILE") or None,
            zero_message_open=environ.get("CONDAINER_FUSE_OPEN", "none") == "none",
            stats=bool(environ.get("CONDAINER_FUSE_STATS")),
            trace=bool(environ.get("CONDAINER_FUSE_TRACE")),
            default_permissions=environ.get("CONDAINER_FUSE_DEFAULT_PERMISSIONS") != "0",
        )


def _escape_opt(value: str) -> str:
    # libfuse splits -o on commas; a backslash protects one.
    return value.replace("\\", "\\\\").replace(",", "\\,")


def fuse_options(image: str, settings: FuseSettings, *, allow_other: bool = False) -> dict:
    """The -o options of our mounts: read-only, no setuid/devices, kernel-side permission checks,
    recognizable in /proc/self/mountinfo as fstype ``fuse.condainer`` with the image as source.

    ``settings.default_permissions`` is ignored with allow_other: without default_permissions the
    kernel would not check modes on open or path walks, and other users could read what the image's
    modes deny them."""
    opts = {
        "ro": True,
        "nosuid": True,
        "nodev": True,
        "default_permissions": True,
        "fsname": _escape_opt(image),
        "subtype": SUBTYPE,
    }
    if not settings.default_permissions and not allow_other:
        del opts["default_permissions"]
    if allow_other:
        opts["allow_other"] = True
    return opts


def wanted_capabilities(capable: int, want: int) -> int:
    """The connection's ``want`` bits: cached symlinks, and always readdirplus (one request answers
    a listing and the lookups after it)."""
    for cap in (FUSE_CAP_CACHE_SYMLINKS, FUSE_CAP_READDIRPLUS):
        if capable & cap:
            want |= cap
    return want & ~FUSE_CAP_READDIRPLUS_AUTO


def fill_stat(st: Any, node: Inode) -> None:
    """Copy NODE's attributes into a ctypes struct stat (both adapters answer with it)."""
    st.st_ino = node.ino
    st.st_mode = node.mode
    st.st_nlink = node.nlink
    st.st_uid = node.uid
    st.st_gid = node.gid
    st.st_rdev = node.rdev
    st.st_size = node.size
    st.st_blocks = node.blocks
    st.st_blksize = BLKSIZE
    t = node.mtime
    st.st_atimespec.tv_sec = t
    st.st_mtimespec.tv_sec = t
    st.st_ctimespec.tv_sec = t


DOT_MODE = stat.S_IFDIR  # what "." and ".." carry in a listing: the type, no other attributes


def dot_ino(pos: int, node: Inode, root: Inode) -> int:
    """Inode number of listing position POS (0 ".", 1 "..") of directory NODE; readdir(3) drops
    entries with d_ino 0, so both need one.  The root's ".." is the root itself."""
    return node.ino if pos == 0 or node is root else node.parent


def permits(mode: int, owner: int, group: int, mask: int, uid: int, gids: set[int]) -> bool:
    """Would access(2) with MASK (R_OK|W_OK|X_OK bits) succeed on a file of MODE, OWNER, GROUP
    for a caller UID with groups GIDS?  The kernel's generic_permission rule, without ACLs: root may
    read and search anything and execute what has any execute bit; others get one class of bits."""
    want = mask & 0o7
    if uid == 0:
        return not (want & os.X_OK) or stat.S_ISDIR(mode) or bool(mode & 0o111)
    if uid == owner:
        have = (mode >> 6) & 0o7
    elif group in gids:
        have = (mode >> 3) & 0o7
    else:
        have = mode & 0o7
    return want & have == want


def caller_groups(pid: int, gid: int) -> set[int]:
    """GID plus the supplementary groups of process PID (from /proc, as libfuse's getgroups does;
    a caller that is gone counts with its primary group only)."""
    groups = {gid}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Groups:"):
                    groups.update(int(g) for g in line.split()[1:])
                    break
    except (OSError, ValueError):
        pass
    return groups


def check_access(node: Inode, mask: int, uid: int, gid: int, pid: int) -> None:
    """access(2) as the kernel answers it (sent only to a mount without default_permissions):
    EROFS to any wish to write, EACCES where the modes deny."""
    if mask & os.W_OK:
        raise OSError(errno.EROFS, "read-only")
    if not permits(node.mode, node.uid, node.gid, mask, uid, caller_groups(pid, gid)):
        raise OSError(errno.EACCES, "permission denied")


class Requests:
    """Error answers and request counts of one mount: damage is logged once per distinct message,
    however often it is read; counts (``FuseSettings.stats``) are logged at unmount."""

    def __init__(self, counting: bool = False) -> None:
        self.counting = counting
        self.counts: dict[str, int] = {}
        self.damaged: set[str] = set()
        self._lock = threading.Lock()

    def count(self, op: str) -> None:
        with self._lock:
            self.counts[op] = self.counts.get(op, 0) + 1

    def errno_of(self, exc: Exception, op: str) -> int:
        """The errno to answer for EXC raised while serving OP."""
        if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
            return exc.errno
        if isinstance(exc, DamagedImage):
            msg = str(exc)
            if msg not in self.damaged:
                self.damaged.add(msg)
                log.error("damaged image: %s", msg)
            return errno.EIO
        log.exception("FUSE %s failed", op)  # a bug: keep its traceback
        return errno.EIO

    def report(self) -> None:
        if self.counting:
            log.info("requests: %s", " ".join(f"{k}={v}" for k, v in sorted(self.counts.items())))
