"""The low-level adapter: the reader served through libfuse3's inode-based API (libfuse3.py).

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

What the kernel is told (timeouts, capabilities, attributes, errnos) is policy.py's.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
from collections.abc import Callable
from ctypes import byref, c_char_p, c_void_p
from typing import Any

from condainer.errors import MountError
from condainer.fs import format as fmt
from condainer.fs.fuse.libfuse3 import bind
from condainer.fs.fuse.policy import (
    DOT_MODE,
    TIMEOUT,
    FuseSettings,
    Requests,
    check_access,
    dot_ino,
    fill_stat,
    wanted_capabilities,
)
from condainer.fs.reader import Inode, SquashfsReader

log = logging.getLogger("condainer.fuse")
_IFMT = fmt.MODE_OF_TYPE  # basic inode type -> st_mode type bits (readdir without plus)

ROOT_ID = 1


class LowLevelFS:
    """Request handlers over a reader; every handler sends exactly one reply."""

    def __init__(
        self,
        reader: SquashfsReader,
        api: Any,
        *,
        timeout: float = TIMEOUT,
        ready: Callable[[], None] | None = None,
        requests: Requests | None = None,
    ) -> None:
        self.reader = reader
        self.api = api
        self.timeout = timeout
        self.ready = ready
        self.root_ref = reader.root.ref
        self.no_xattrs = reader.sb.xattr_id_table_start == fmt.NO_TABLE
        self.requests = requests if requests is not None else Requests()
        self.ops = self._make_ops()

    # -- helpers ---------------------------------------------------------------------------------

    def node_id(self, node: Inode) -> int:
        return ROOT_ID if node.ref == self.root_ref else node.ref + 2

    def node(self, nodeid: int) -> Inode:
        return self.reader.root if nodeid == ROOT_ID else self.reader.inode(nodeid - 2)

    def entry(self, node: Inode) -> Any:
        e = self.api.entry_param()
        e.ino = self.node_id(node)
        e.attr_timeout = self.timeout
        e.entry_timeout = self.timeout
        fill_stat(e.attr, node)
        return e

    def _handler(self, name: str, fn: Callable) -> Callable:
        reply_err = self.api.reply_err
        requests = self.requests
        counting = requests.counting

        def handler(req, *args):
            if counting:
                requests.count(name)
            try:
                fn(req, *args)
            except Exception as e:
                reply_err(req, requests.errno_of(e, name))
            except BaseException:
                log.critical("FUSE %s: fatal error", name, exc_info=True)
                reply_err(req, errno.EIO)
                raise

        return handler

    # -- requests --------------------------------------------------------------------------------

    def init(self, userdata: Any, conn: Any) -> None:
        try:
            c = conn.contents
            c.want = wanted_capabilities(c.capable, c.want)
        except Exception:
            log.exception("FUSE init failed")
        if self.ready is not None:
            self.ready()

    def destroy(self, userdata: Any) -> None:
        self.requests.report()

    def lookup(self, req: int, parent: int, name: bytes) -> None:
        node = self.reader.lookup(self.node(parent), name)
        if node is None:
            e = self.api.entry_param()  # ino 0: a negative entry the kernel may cache
            e.entry_timeout = self.timeout
            self.api.reply_entry(req, byref(e))
            return
        self.api.reply_entry(req, byref(self.entry(node)))

    def getattr(self, req: int, ino: int, fi: Any) -> None:
        st = self.api.c_stat()
        fill_stat(st, self.node(ino))
        self.api.reply_attr(req, byref(st), self.timeout)

    def readlink(self, req: int, ino: int) -> None:
        node = self.node(ino)
        if not node.is_symlink:
            raise OSError(errno.EINVAL, "not a symlink")
        self.api.reply_readlink(req, node.target)

    def access(self, req: int, ino: int, mask: int) -> None:
        """Sent only when the kernel does not check modes itself (a mount without
        default_permissions)."""
        node = self.node(ino)
        ctx = self.api.req_ctx(req).contents
        check_access(node, mask, ctx.uid, ctx.gid, ctx.pid)
        self.api.reply_err(req, 0)


    def open(self, req: int, ino: int, fi: Any) -> None:
        if fi.contents.flags & os.O_ACCMODE != os.O_RDONLY:
            raise OSError(errno.EROFS, "read-only")
        self.api.reply_err(req, errno.ENOSYS)  # zero-message opens from now on

    def opendir(self, req: int, ino: int, fi: Any) -> None:
        self.api.reply_err(req, errno.ENOSYS)  # zero-message opendirs, cached listings

    def read(self, req: int, ino: int, size: int, off: int, fi: Any) -> None:
        data = self.reader.read(self.node(ino), off, size)
        self.api.reply_buf(req, data, len(data))

    def _readdir(self, req: int, ino: int, size: int, off: int, plus: bool) -> None:
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
                # Dot entries need inode numbers but no attributes.
                name = b"." if pos == 0 else b".."
                ino_no = dot_ino(pos, node, self.reader.root)
                if plus:
                    e = api.entry_param()
                    e.attr.st_ino = ino_no
                    e.attr.st_mode = DOT_MODE
                    n = api.add_direntry_plus(req, base + used, size - used, name, byref(e), pos + 1)
                else:
                    ctypes.memset(byref(st), 0, ctypes.sizeof(st))
                    st.st_ino = ino_no
                    st.st_mode = DOT_MODE
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

    def readdir(self, req: int, ino: int, size: int, off: int, fi: Any) -> None:
        self._readdir(req, ino, size, off, False)

    def readdirplus(self, req: int, ino: int, size: int, off: int, fi: Any) -> None:
        self._readdir(req, ino, size, off, True)

    def statfs(self, req: int, ino: int) -> None:
        stv = self.api.c_statvfs()
        for key, value in self.reader.statfs().items():
            if hasattr(stv, key):
                setattr(stv, key, value)
        self.api.reply_statfs(req, byref(stv))

    def getxattr(self, req: int, ino: int, name: bytes, size: int) -> None:
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

    def listxattr(self, req: int, ino: int, size: int) -> None:
        names = b"".join(k + b"\0" for k in self.reader.xattrs(self.node(ino)))
        self._reply_sized(req, names, size)

    def _reply_sized(self, req: int, data: bytes, size: int) -> None:
        if size == 0:
            self.api.reply_xattr(req, len(data))
        elif len(data) > size:
            raise OSError(errno.ERANGE, "buffer too small")
        else:
            self.api.reply_buf(req, data, len(data))

    def erofs(self, req: int) -> None:
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
    mfusepy: Any,
    settings: FuseSettings,
    *,
    ready: Callable[[], None] | None = None,
) -> None:
    """Mount and serve until unmounted (or SIGTERM/SIGHUP); raises MountError if mounting fails."""
    api = bind(mfusepy)
    fs = LowLevelFS(reader, api, timeout=TIMEOUT, ready=ready, requests=Requests(settings.stats))
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
                rc = api.session_loop_mt(se, 0) if settings.threads else api.session_loop(se)
            finally:
                api.session_unmount(se)
            if rc < 0:
                log.warning("FUSE loop ended with %d", rc)
        finally:
            api.remove_signal_handlers(se)
    finally:
        api.session_destroy(se)
