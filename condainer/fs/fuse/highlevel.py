"""The high-level adapter: the reader served through mfusepy's path-based ``FUSE`` class.

The fallback for libfuse2 (``CONDAINER_FUSE_API=high`` forces it on libfuse3); the policy is
policy.py's, as in the low-level adapter.  What mfusepy's own wrappers would cost or lose is
replaced in :class:`FuseCalls`: getattr fills the C struct directly, readdir hands out attributes
(readdirplus) and positions, opendir sets ``cache_readdir`` where libfuse passes it on (>= 3.16.1;
mfusepy's opendir wrapper drops the fuse_file_info), and unexpected exceptions answer EIO.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import logging
import os
from collections.abc import Callable
from ctypes import memmove, memset, sizeof
from typing import Any

from condainer.errors import MountError
from condainer.fs import format as fmt
from condainer.fs.fuse.policy import (
    DOT_MODE,
    TIMEOUT,
    FuseSettings,
    Requests,
    check_access,
    dot_ino,
    fill_stat,
    fuse_options,
    wanted_capabilities,
)
from condainer.fs.reader import DamagedImage, Inode, SquashfsReader

log = logging.getLogger("condainer.fuse")
_IFMT = fmt.MODE_OF_TYPE  # basic inode type -> st_mode type bits (readdir without plus)

FUSE_READDIR_PLUS = 1
FUSE_FILL_DIR_PLUS = 2


class SquashfsOperations:
    """The operations over a reader, as mfusepy's path-based FUSE class calls them.

    Written against the mfusepy module serve.load_mfusepy loaded (libfuse3 or 2, decided at run
    time), so it is not imported here: build_operations puts mfusepy.Operations under this class
    and hands its exception type and functions in.
    """

    use_ns = True
    flag_nullpath_ok = False
    flag_nopath = False

    def __init__(
        self, reader: SquashfsReader, mfusepy: Any, settings: FuseSettings, ready: Callable[[], None] | None
    ) -> None:
        self.reader = reader
        self.handles: dict[int, Inode] = {}
        self._fh = itertools.count(1)
        self.requests = Requests(settings.stats)
        self.count_requests = settings.stats
        self._mfusepy = mfusepy
        self._fuse_error = mfusepy.FuseOSError
        self._trace = settings.trace
        self._zero_message_open = settings.zero_message_open
        self._ready = ready

    # -- helpers -----------------------------------------------------------------------------------

    def count(self, op: str, path: Any = None) -> None:
        if self.count_requests:
            self.requests.count(op)
            if self._trace:
                log.info("request %s %s", op, path)

    def node(self, path: Any) -> Inode:
        try:
            node = self.reader.resolve(path)
        except DamagedImage as e:
            raise self._fuse_error(self.requests.errno_of(e, "lookup")) from None
        if node is None:
            raise self._fuse_error(errno.ENOENT)
        return node

    def guard(self, fn: Callable, *args: Any) -> Any:
        """Run a reader call: damage is EIO plus one log line; anything unexpected EIO plus a
        traceback in the log."""
        try:
            return fn(*args)
        except self._fuse_error:
            raise
        except Exception as e:
            raise self._fuse_error(self.requests.errno_of(e, getattr(fn, "__name__", str(fn)))) from None

    # -- lifecycle ---------------------------------------------------------------------------------

    def init_with_config(self, conn: Any, config: Any) -> None:
        if config is not None:
            config.entry_timeout = TIMEOUT
            config.attr_timeout = TIMEOUT
            config.negative_timeout = TIMEOUT
            config.kernel_cache = 1  # keep_cache on every open: pages survive close/reopen
            config.use_ino = 1  # st_ino is the squashfs inode number (hard links share it)
            config.readdir_ino = 1
        if conn is not None:
            conn.want = wanted_capabilities(conn.capable, conn.want)
        if self._ready is not None:
            self._ready()

    def destroy(self, path: Any) -> None:
        self.requests.report()

    # -- reads -------------------------------------------------------------------------------------

    def getattr(self, path: Any, fh: Any = None) -> dict:  # the fuse class's fgetattr answers
        return self.reader.getattr(self.node(path))

    def readlink(self, path: Any) -> bytes:
        self.count("readlink")
        node = self.node(path)
        if not node.is_symlink:
            raise self._fuse_error(errno.EINVAL)
        return node.target

    def open(self, path: Any, fi: Any) -> int:
        self.count("open")
        if fi.flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise self._fuse_error(errno.EROFS)
        node = self.node(path)
        if self._zero_message_open:
            # ENOSYS from open tells the kernel (>= 4.19) to stop sending OPEN and RELEASE and
            # to treat every open as keep_cache (fs/fuse/file.c, fuse_file_open): two requests
            # fewer per open, and reads find files by path.
            raise self._fuse_error(errno.ENOSYS)
        fh = next(self._fh)
        self.handles[fh] = node
        fi.fh = fh
        fi.keep_cache = 1
        return 0

    def release(self, path: Any, fi: Any) -> int:
        self.count("release")
        self.handles.pop(fi.fh, None)
        return 0

    def read(self, path: Any, size: int, offset: int, fi: Any) -> bytes:  # see the fuse class
        raise self._fuse_error(errno.EIO)

    def opendir(self, path: Any) -> int:  # see the fuse class
        return 0

    def readdir(self, path: Any, fh: Any) -> list:  # see the fuse class
        return []

    def statfs(self, path: Any) -> dict:
        self.count("statfs")
        return self.reader.statfs()

    def access(self, path: Any, amode: int) -> int:
        self.count("access")
        node = self.node(path)
        uid, gid, pid = self._mfusepy.fuse_get_context()
        check_access(node, amode, uid, gid, pid)
        return 0

    def getxattr(self, path: Any, name: str, position: int = 0) -> bytes:
        self.count("getxattr")
        node = self.node(path)
        value = self.guard(self.reader.xattrs, node).get(os.fsencode(name))
        if value is None:
            raise self._fuse_error(self._mfusepy.ENOATTR)
        return value

    def listxattr(self, path: Any) -> list[str]:
        self.count("listxattr")
        node = self.node(path)
        return [os.fsdecode(k) for k in self.guard(self.reader.xattrs, node)]

    # -- every write is refused --------------------------------------------------------------------

    def _erofs(self, *args: Any, **kwargs: Any) -> None:
        raise self._fuse_error(errno.EROFS)

    chmod = chown = create = link = mkdir = mknod = rename = rmdir = _erofs
    setxattr = removexattr = symlink = truncate = unlink = utimens = write = _erofs
    fallocate = _erofs


def build_operations(
    reader: SquashfsReader, mfusepy: Any, settings: FuseSettings, ready: Callable[[], None] | None = None
) -> Any:
    """An mfusepy Operations object over ``reader``; ``ready()`` is called once INIT arrived."""
    operations = type("SquashfsOperations", (SquashfsOperations, mfusepy.Operations), {})
    if (mfusepy.fuse_version_major, mfusepy.fuse_version_minor) < (3, 16):
        # libfuse < 3.16.1 drops the flags a high-level opendir sets (fixed by libfuse commit
        # 98eb808, "Pass cache_readdir and keep_cache from high level API"): an opendir in Python
        # would be a round trip that buys nothing, so libfuse answers opendir alone.
        operations.opendir = None
    return operations(reader, mfusepy, settings, ready)


class FuseCalls:
    """mfusepy.FUSE's wrappers that matter for speed and for the kernel's caches, replaced.

    fuse_class puts mfusepy.FUSE under this class, and the mfusepy module and its ``c_stat`` on it
    (the module is chosen at run time, as for SquashfsOperations).
    """

    _mfusepy: Any
    _c_stat: Any
    operations: SquashfsOperations

    def _wrapper(self, func: Callable, *args: Any, **kwargs: Any) -> int:
        # mfusepy answers unexpected exceptions with EINVAL; ours are EIO, logged (policy.py).
        try:
            return func(*args, **kwargs) or 0
        except Exception as e:
            return -self.operations.requests.errno_of(e, func.__name__)
        except BaseException:
            log.critical("FUSE %s: fatal error, leaving the FUSE loop", func.__name__, exc_info=True)
            self._mfusepy.fuse_exit()
            return -errno.EFAULT

    def fgetattr(self, path: Any, buf: Any, fip: Any) -> int:
        ops = self.operations
        ops.count("getattr", path)
        if fip:
            node = ops.handles.get(fip.contents.fh)
            if node is None:
                node = ops.node(path)
        else:
            node = ops.node(path)
        memset(buf, 0, sizeof(self._c_stat))
        fill_stat(buf.contents, node)
        return 0

    def read(self, path: Any, buf: Any, size: int, offset: int, fip: Any) -> int:
        ops = self.operations
        ops.count("read")
        node = ops.handles.get(fip.contents.fh)
        if node is None:
            node = ops.node(path)
        data = ops.guard(ops.reader.read, node, offset, size)
        n = len(data)
        if n:
            memmove(buf, data, n)
        return n

    def opendir(self, path: Any, fip: Any) -> int:
        ops = self.operations
        ops.count("opendir")
        node = ops.node(path)
        if not node.is_dir:
            raise self._mfusepy.FuseOSError(errno.ENOTDIR)
        fi = fip.contents
        fi.fh = 0
        fi.keep_cache = 1  # the cached listing stays valid across opendirs
        fi.cache_readdir = 1  # the kernel answers later getdents from its own copy
        return 0

    def readdir_fuse_2(self, path: Any, buf: Any, filler: Any, offset: int, fip: Any) -> int:
        # libfuse2's filler takes no flags argument.
        return self.readdir_fuse_3(
            path, buf, lambda b, n, st, off, fl: filler(b, n, st, off), offset, fip, 0
        )

    def readdir_fuse_3(self, path: Any, buf: Any, filler: Any, offset: int, fip: Any, flags: int) -> int:
        # Entries carry their position (index + 1) as offset.  With offsets, libfuse sends
        # each READDIRPLUS entry's attributes and entry timeouts to the kernel as they are
        # filled; without them it buffers the listing and strips the attributes again
        # (libfuse 3.14 lib/fuse.c readdir_fill_from_list), so every name would still cost
        # a LOOKUP.  The price: one call per kernel buffer (about 4 KiB) instead of one per
        # directory.
        ops = self.operations
        plus = flags & FUSE_READDIR_PLUS
        ops.count("readdirplus" if plus else "readdir")
        node = ops.node(path)
        entries = ops.guard(ops.reader.listdir, node)
        c_stat = self._c_stat
        st = c_stat()
        inode = ops.reader.inode
        root = ops.reader.root
        end = len(entries) + 2
        for pos in range(offset, end):
            if pos < 2:
                memset(ctypes.byref(st), 0, sizeof(c_stat))
                st.st_mode = DOT_MODE
                st.st_ino = dot_ino(pos, node, root)
                if filler(buf, b"." if pos == 0 else b"..", st, pos + 1, 0):
                    break
                continue
            e = entries[pos - 2]
            memset(ctypes.byref(st), 0, sizeof(c_stat))
            if plus:
                fill_stat(st, ops.guard(inode, e.ref))
                full = filler(buf, e.name, st, pos + 1, FUSE_FILL_DIR_PLUS)
            else:
                st.st_ino = e.ino
                st.st_mode = _IFMT[e.type]
                full = filler(buf, e.name, st, pos + 1, 0)
            if full:
                break
        return 0

    def readlink(self, path: Any, buf: Any, bufsize: int) -> int:
        ops = self.operations
        ops.count("readlink")
        node = ops.node(path)
        if not node.is_symlink:
            raise self._mfusepy.FuseOSError(errno.EINVAL)
        data = node.target[: bufsize - 1] + b"\0"
        memmove(buf, data, len(data))
        return 0


def fuse_class(mfusepy: Any) -> type:
    """mfusepy.FUSE with the wrappers that matter for speed and for the kernel's caches replaced."""
    return type("_Fuse", (FuseCalls, mfusepy.FUSE), {"_mfusepy": mfusepy, "_c_stat": mfusepy.c_stat})


def serve_highlevel(
    reader: SquashfsReader,
    image: str,
    mountpoint: str,
    mfusepy: Any,
    settings: FuseSettings,
    *,
    foreground: bool = True,
    allow_other: bool = False,
    ready: Callable[[], None] | None = None,
) -> None:
    """Mount and serve through mfusepy until unmounted; MountError if mounting fails."""
    ops = build_operations(reader, mfusepy, settings, ready=ready)
    opts = fuse_options(image, settings, allow_other=allow_other)
    if mfusepy.fuse_version_major == 2:
        # libfuse2 has no init config to set these in (init_with_config): they are mount options.
        opts.update(use_ino=True, readdir_ino=True, kernel_cache=True, entry_timeout=TIMEOUT,
                    attr_timeout=TIMEOUT, negative_timeout=TIMEOUT)
    try:
        fuse_class(mfusepy)(ops, mountpoint, raw_fi=True, foreground=foreground, **opts)
    except RuntimeError as e:
        raise MountError(f"{mountpoint}: FUSE mount failed ({e})") from None
