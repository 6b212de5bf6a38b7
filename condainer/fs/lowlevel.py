"""The reader served through libfuse3's low-level API (ctypes; structures and library from mfusepy).

Why not only mfusepy's high-level API: libfuse's high-level layer turns every request into a path
and keeps a node table, and in libfuse 3.14 it drops the attributes of buffered readdirplus replies
and the flags an opendir sets (cache_readdir, keep_cache; fixed in 3.16.1).  Here, as in
squashfuse_ll, a request names an inode and nothing is kept per node:

- node id = squashfs inode reference + 2 (the root is FUSE_ROOT_ID 1), so lookup, getattr and
  read need no table and FORGET needs no answer from Python;
- OPEN and OPENDIR are answered ENOSYS once: the kernel then opens files and directories without
  asking and treats them as keep_cache and cache_readdir (Linux fs/fuse/file.c, fuse_file_open),
  so a repeated listing, stat, readlink or read of cached pages never leaves the kernel;
- failed lookups are answered as cacheable negative entries (ino 0, long entry timeout);
- readdirplus hands every name its attributes, so the lookups after a listing are answered by the
  kernel.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import stat
import threading
from ctypes import CFUNCTYPE, POINTER, byref, c_char_p, c_double, c_int, c_size_t, c_uint64, c_void_p

from condainer.errors import MountError, ToolMissing
from condainer.fs import format as fmt
from condainer.fs.reader import DamagedImage, Inode, SquashfsReader
from condainer.fs.reader.inodes import _IFMT

log = logging.getLogger("condainer.fuse")

ROOT_ID = 1
FUSE_CAP_READDIRPLUS = 1 << 13
FUSE_CAP_READDIRPLUS_AUTO = 1 << 14
FUSE_CAP_CACHE_SYMLINKS = 1 << 23
BLKSIZE = 128 * 1024  # st_blksize: invites applications to read in large chunks


def fill_stat(st, node: Inode) -> None:
    """Copy NODE's attributes into a ctypes struct stat (both FUSE layers answer with it)."""
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


c_off_t = ctypes.c_int64
req_t = c_void_p
ino_t = c_uint64


def bind(mfusepy):
    """The libfuse3 functions and structures we call, or ToolMissing."""
    if mfusepy.fuse_version_major != 3:
        raise ToolMissing("the low-level FUSE layer needs libfuse3")
    lib = mfusepy._libfuse
    c_stat, fi_t, conn_t, c_statvfs = (
        mfusepy.c_stat,
        mfusepy.fuse_file_info,
        mfusepy.fuse_conn_info,
        mfusepy.c_statvfs,
    )

    class fuse_args(ctypes.Structure):  # noqa: N801 - C name
        _fields_ = [("argc", c_int), ("argv", POINTER(c_char_p)), ("allocated", c_int)]

    class fuse_entry_param(ctypes.Structure):  # noqa: N801 - C name
        _fields_ = [
            ("ino", c_uint64),
            ("generation", c_uint64),
            ("attr", c_stat),
            ("attr_timeout", c_double),
            ("entry_timeout", c_double),
        ]

    class fuse_ctx(ctypes.Structure):  # noqa: N801 - C name
        _fields_ = [("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32), ("pid", c_int), ("umask", ctypes.c_uint32)]

    fi_p = POINTER(fi_t)
    ops_fields = [
        ("init", CFUNCTYPE(None, c_void_p, POINTER(conn_t))),
        ("destroy", CFUNCTYPE(None, c_void_p)),
        ("lookup", CFUNCTYPE(None, req_t, ino_t, c_char_p)),
        ("forget", c_void_p),
        ("getattr", CFUNCTYPE(None, req_t, ino_t, fi_p)),
        ("setattr", CFUNCTYPE(None, req_t)),  # write ops: only req is read (extra args are ignored
        ("readlink", CFUNCTYPE(None, req_t, ino_t)),  # by the callee in the C calling convention)
        ("mknod", CFUNCTYPE(None, req_t)),
        ("mkdir", CFUNCTYPE(None, req_t)),
        ("unlink", CFUNCTYPE(None, req_t)),
        ("rmdir", CFUNCTYPE(None, req_t)),
        ("symlink", CFUNCTYPE(None, req_t)),
        ("rename", CFUNCTYPE(None, req_t)),
        ("link", CFUNCTYPE(None, req_t)),
        ("open", CFUNCTYPE(None, req_t, ino_t, fi_p)),
        ("read", CFUNCTYPE(None, req_t, ino_t, c_size_t, c_off_t, fi_p)),
        ("write", CFUNCTYPE(None, req_t)),
        ("flush", c_void_p),
        ("release", c_void_p),
        ("fsync", c_void_p),
        ("opendir", CFUNCTYPE(None, req_t, ino_t, fi_p)),
        ("readdir", CFUNCTYPE(None, req_t, ino_t, c_size_t, c_off_t, fi_p)),
        ("releasedir", c_void_p),
        ("fsyncdir", c_void_p),
        ("statfs", CFUNCTYPE(None, req_t, ino_t)),
        ("setxattr", CFUNCTYPE(None, req_t)),
        ("getxattr", CFUNCTYPE(None, req_t, ino_t, c_char_p, c_size_t)),
        ("listxattr", CFUNCTYPE(None, req_t, ino_t, c_size_t)),
        ("removexattr", CFUNCTYPE(None, req_t)),
        ("access", CFUNCTYPE(None, req_t, ino_t, c_int)),
        ("create", CFUNCTYPE(None, req_t)),
        ("getlk", c_void_p),
        ("setlk", c_void_p),
        ("bmap", c_void_p),
        ("ioctl", c_void_p),
        ("poll", c_void_p),
        ("write_buf", c_void_p),
        ("retrieve_reply", c_void_p),
        ("forget_multi", c_void_p),
        ("flock", c_void_p),
        ("fallocate", CFUNCTYPE(None, req_t)),
        ("readdirplus", CFUNCTYPE(None, req_t, ino_t, c_size_t, c_off_t, fi_p)),
    ]

    class fuse_lowlevel_ops(ctypes.Structure):  # noqa: N801 - C name
        _fields_ = ops_fields

    def fn(name, restype, *argtypes):
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = argtypes
        return f

    api = type("LibFuse3", (), {})()
    api.fuse_args, api.entry_param, api.ops_t, api.c_stat, api.c_statvfs = (
        fuse_args,
        fuse_entry_param,
        fuse_lowlevel_ops,
        c_stat,
        c_statvfs,
    )
    api.session_new = fn(
        "fuse_session_new", c_void_p, POINTER(fuse_args), POINTER(fuse_lowlevel_ops), c_size_t, c_void_p
    )
    api.session_mount = fn("fuse_session_mount", c_int, c_void_p, c_char_p)
    api.session_unmount = fn("fuse_session_unmount", None, c_void_p)
    api.session_destroy = fn("fuse_session_destroy", None, c_void_p)
    api.session_exit = fn("fuse_session_exit", None, c_void_p)
    api.session_loop = fn("fuse_session_loop", c_int, c_void_p)
    api.session_loop_mt = fn("fuse_session_loop_mt_31", c_int, c_void_p, c_int)
    api.set_signal_handlers = fn("fuse_set_signal_handlers", c_int, c_void_p)
    api.remove_signal_handlers = fn("fuse_remove_signal_handlers", None, c_void_p)
    api.req_ctx = fn("fuse_req_ctx", POINTER(fuse_ctx), req_t)
    api.reply_err = fn("fuse_reply_err", c_int, req_t, c_int)
    api.reply_entry = fn("fuse_reply_entry", c_int, req_t, POINTER(fuse_entry_param))
    api.reply_attr = fn("fuse_reply_attr", c_int, req_t, POINTER(c_stat), c_double)
    api.reply_readlink = fn("fuse_reply_readlink", c_int, req_t, c_char_p)
    api.reply_open = fn("fuse_reply_open", c_int, req_t, fi_p)
    api.reply_buf = fn("fuse_reply_buf", c_int, req_t, c_void_p, c_size_t)
    api.reply_statfs = fn("fuse_reply_statfs", c_int, req_t, POINTER(c_statvfs))
    api.reply_xattr = fn("fuse_reply_xattr", c_int, req_t, c_size_t)
    api.add_direntry = fn(
        "fuse_add_direntry", c_size_t, req_t, c_void_p, c_size_t, c_char_p, POINTER(c_stat), c_off_t
    )
    api.add_direntry_plus = fn(
        "fuse_add_direntry_plus",
        c_size_t,
        req_t,
        c_void_p,
        c_size_t,
        c_char_p,
        POINTER(fuse_entry_param),
        c_off_t,
    )
    return api


class LowLevelFS:
    """Request handlers over a reader; every handler sends exactly one reply."""

    def __init__(
        self,
        reader: SquashfsReader,
        api,
        *,
        timeout: float,
        ready=None,
        count_requests: bool = False,
        damaged: set | None = None,
    ) -> None:
        self.reader = reader
        self.api = api
        self.timeout = timeout
        self.ready = ready
        self.root_ref = reader.root.ref
        self.no_xattrs = reader.sb.xattr_id_table_start == fmt.NO_TABLE
        self.damaged = damaged if damaged is not None else set()
        self.counts: dict[str, int] = {}
        self.count_requests = count_requests
        self._lock = threading.Lock()
        self.ops = self._make_ops()

    # -- helpers ---------------------------------------------------------------------------------

    def node_id(self, node: Inode) -> int:
        return ROOT_ID if node.ref == self.root_ref else node.ref + 2

    def node(self, nodeid: int) -> Inode:
        return self.reader.root if nodeid == ROOT_ID else self.reader.inode(nodeid - 2)


    def entry(self, node: Inode):
        e = self.api.entry_param()
        e.ino = self.node_id(node)
        e.attr_timeout = self.timeout
        e.entry_timeout = self.timeout
        fill_stat(e.attr, node)
        return e

    def _handler(self, name, fn):
        api = self.api
        reply_err = api.reply_err
        damaged = self.damaged
        counting = self.count_requests

        def handler(req, *args):
            if counting:
                with self._lock:
                    self.counts[name] = self.counts.get(name, 0) + 1
            try:
                fn(req, *args)
            except DamagedImage as e:
                msg = str(e)
                if msg not in damaged:
                    damaged.add(msg)
                    log.error("damaged image: %s", msg)
                reply_err(req, errno.EIO)
            except OSError as e:
                reply_err(req, e.errno if isinstance(e.errno, int) and e.errno > 0 else errno.EIO)
            except Exception:
                log.exception("FUSE %s failed", name)
                reply_err(req, errno.EIO)
            except BaseException:
                log.critical("FUSE %s: fatal error", name, exc_info=True)
                reply_err(req, errno.EIO)
                raise

        return handler

    # -- requests --------------------------------------------------------------------------------

    def init(self, userdata, conn) -> None:
        try:
            c = conn.contents
            want = c.want
            for cap in (FUSE_CAP_CACHE_SYMLINKS, FUSE_CAP_READDIRPLUS):
                if c.capable & cap:
                    want |= cap
            want &= ~FUSE_CAP_READDIRPLUS_AUTO  # always plus: a listing answers the lookups after it
            c.want = want
        except Exception:
            log.exception("FUSE init failed")
        if self.ready is not None:
            self.ready()

    def destroy(self, userdata) -> None:
        if self.count_requests:
            log.info("requests: %s", " ".join(f"{k}={v}" for k, v in sorted(self.counts.items())))

    def lookup(self, req, parent, name) -> None:
        node = self.reader.lookup(self.node(parent), name)
        if node is None:
            e = self.api.entry_param()  # ino 0: a negative entry the kernel may cache
            e.entry_timeout = self.timeout
            self.api.reply_entry(req, byref(e))
            return
        self.api.reply_entry(req, byref(self.entry(node)))

    def getattr(self, req, ino, fi) -> None:
        st = self.api.c_stat()
        fill_stat(st, self.node(ino))
        self.api.reply_attr(req, byref(st), self.timeout)

    def readlink(self, req, ino) -> None:
        node = self.node(ino)
        if not node.is_symlink:
            raise OSError(errno.EINVAL, "not a symlink")
        self.api.reply_readlink(req, node.target)

    def access(self, req, ino, mask) -> None:
        """Sent only when the kernel does not check modes itself (a mount without
        default_permissions): answer as the kernel would, and EROFS to any wish to write."""
        node = self.node(ino)
        if mask & os.W_OK:
            raise OSError(errno.EROFS, "read-only")
        ctx = self.api.req_ctx(req).contents
        if not permits(node.mode, node.uid, node.gid, mask, ctx.uid, caller_groups(ctx.pid, ctx.gid)):
            raise OSError(errno.EACCES, "permission denied")
        self.api.reply_err(req, 0)

    def open(self, req, ino, fi) -> None:
        if fi.contents.flags & os.O_ACCMODE != os.O_RDONLY:
            raise OSError(errno.EROFS, "read-only")
        self.api.reply_err(req, errno.ENOSYS)  # zero-message opens from now on

    def opendir(self, req, ino, fi) -> None:
        self.api.reply_err(req, errno.ENOSYS)  # zero-message opendirs, cached listings

    def read(self, req, ino, size, off, fi) -> None:
        data = self.reader.read(self.node(ino), off, size)
        self.api.reply_buf(req, data, len(data))

    def _readdir(self, req, ino, size, off, plus: bool) -> None:
        node = self.node(ino)
        entries = self.reader.listdir(node)
        api = self.api
        end = len(entries) + 2
        if off >= end:  # the kernel's closing call: nothing left
            api.reply_buf(req, None, 0)
            return
        buf = ctypes.create_string_buffer(size)
        base = ctypes.addressof(buf)
        used = 0
        st = api.c_stat()
        for pos in range(off, end):
            if pos < 2:
                # Dot entries need inode numbers (readdir(3) drops d_ino 0) but no attributes.
                name = b"." if pos == 0 else b".."
                ino_no = node.ino if pos == 0 or node is self.reader.root else node.parent
                if plus:
                    e = api.entry_param()
                    e.attr.st_ino = ino_no
                    e.attr.st_mode = stat.S_IFDIR
                    n = api.add_direntry_plus(req, base + used, size - used, name, byref(e), pos + 1)
                else:
                    ctypes.memset(byref(st), 0, ctypes.sizeof(st))
                    st.st_ino = ino_no
                    st.st_mode = stat.S_IFDIR
                    n = api.add_direntry(req, base + used, size - used, name, byref(st), pos + 1)
            else:
                d = entries[pos - 2]
                if plus:
                    e = self.entry(self.reader.inode(d.ref))
                    n = api.add_direntry_plus(req, base + used, size - used, d.name, byref(e), pos + 1)
                else:
                    st.st_ino = d.ino
                    st.st_mode = _IFMT[d.type]
                    n = api.add_direntry(req, base + used, size - used, d.name, byref(st), pos + 1)
            if n > size - used:
                break
            used += n
        api.reply_buf(req, base, used)

    def readdir(self, req, ino, size, off, fi) -> None:
        self._readdir(req, ino, size, off, False)

    def readdirplus(self, req, ino, size, off, fi) -> None:
        self._readdir(req, ino, size, off, True)

    def statfs(self, req, ino) -> None:
        stv = self.api.c_statvfs()
        for key, value in self.reader.statfs().items():
            if hasattr(stv, key):
                setattr(stv, key, value)
        self.api.reply_statfs(req, byref(stv))

    def getxattr(self, req, ino, name, size) -> None:
        if self.no_xattrs:
            # An image without xattrs: ENOSYS makes the kernel stop asking (it answers EOPNOTSUPP
            # itself), which spares a round trip per exec (security.capability) and two per
            # file of ls -l.  listxattr stays exact: it still answers an empty list.
            self.api.reply_err(req, errno.ENOSYS)
            return
        value = self.reader.xattrs(self.node(ino)).get(name)
        if value is None:
            raise OSError(errno.ENODATA, "no such attribute")
        self._reply_sized(req, value, size)

    def listxattr(self, req, ino, size) -> None:
        names = b"".join(k + b"\0" for k in self.reader.xattrs(self.node(ino)))
        self._reply_sized(req, names, size)

    def _reply_sized(self, req, data: bytes, size: int) -> None:
        if size == 0:
            self.api.reply_xattr(req, len(data))
        elif len(data) > size:
            raise OSError(errno.ERANGE, "buffer too small")
        else:
            self.api.reply_buf(req, data, len(data))

    def erofs(self, req) -> None:
        self.api.reply_err(req, errno.EROFS)

    def _make_ops(self):
        ops = self.api.ops_t()
        self._callbacks = []
        for name, proto in self.api.ops_t._fields_:
            if proto is c_void_p:
                continue
            if name in ("init", "destroy"):
                cb = proto(getattr(self, name))
            else:
                method = getattr(self, name, None) or self.erofs
                cb = proto(self._handler(name, method))
            self._callbacks.append(cb)  # keep the C thunks alive as long as the session
            setattr(ops, name, cb)
        return ops


def serve_lowlevel(
    reader: SquashfsReader,
    mountpoint: str,
    options: str,
    mfusepy,
    *,
    timeout: float,
    ready=None,
    threads: bool = True,
) -> None:
    """Mount and serve until unmounted (or SIGTERM/SIGHUP); raises MountError if mounting fails."""
    api = bind(mfusepy)
    fs = LowLevelFS(
        reader, api, timeout=timeout, ready=ready, count_requests=bool(os.environ.get("CONDAINER_FUSE_STATS"))
    )
    argv_list = [b"condainer", b"-o", options.encode()]
    argv = (c_char_p * len(argv_list))(*argv_list)
    args = api.fuse_args(len(argv_list), argv, 0)
    se = api.session_new(byref(args), byref(fs.ops), ctypes.sizeof(fs.ops), None)
    if not se:
        raise MountError(f"{mountpoint}: libfuse refused the session options ({options})")
    try:
        if api.set_signal_handlers(se) != 0:
            raise MountError(f"{mountpoint}: cannot install FUSE signal handlers")
        try:
            if api.session_mount(se, os.fsencode(mountpoint)) != 0:
                raise MountError(f"{mountpoint}: FUSE mount failed (see the log)")
            try:
                rc = api.session_loop_mt(se, 0) if threads else api.session_loop(se)
            finally:
                api.session_unmount(se)
            if rc < 0:
                log.warning("FUSE loop ended with %d", rc)
        finally:
            api.remove_signal_handlers(se)
    finally:
        api.session_destroy(se)
