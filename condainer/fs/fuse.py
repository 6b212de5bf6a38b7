"""Mount a squashfs image read-only with a Python FUSE daemon over mfusepy and libfuse3.

The FUSE layers only adapt :class:`condainer.fs.reader.SquashfsReader`.  On libfuse3 the daemon
serves through libfuse's low-level, inode-based API (:mod:`condainer.fs.lowlevel`); mfusepy's
path-based ``FUSE`` class below is the fallback for libfuse2 (``CONDAINER_FUSE_API=high`` forces
it).  Because the image never changes, both ask the kernel to cache everything it can, so repeated
stats, reads, listings, symlinks and failed lookups never come back to Python:

- entry, attribute and negative-lookup timeouts of a day;
- zero-message opens (OPEN answered ENOSYS once: the kernel then keeps page caches) and, in the
  low-level layer, zero-message opendirs (cached listings); the high-level layer sets
  ``cache_readdir`` in opendir where libfuse passes it on (>= 3.16.1; mfusepy's own opendir wrapper
  drops the fuse_file_info, so :class:`_Fuse` overrides it);
- readdirplus with full attributes (mfusepy passes only the mode), so a listing also answers the
  lookups and stats that usually follow it;
- FUSE_CAP_CACHE_SYMLINKS; default_permissions, so the kernel checks modes itself; multithreaded.

Mounts show in /proc/self/mountinfo with fstype ``fuse.condainer`` and the absolute image path as
source.  ``mount_image`` starts ``python -m condainer.fs.fuse`` in a new session and returns once
the daemon reports through a pipe that the kernel's INIT arrived and the mount answers statvfs.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import itertools
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time

from condainer.errors import CondainerError, ImageError, MountError, ToolMissing
from condainer.fs.lowlevel import caller_groups, permits
from condainer.fs.lowlevel import fill_stat as _fill_stat
from condainer.fs.reader import DamagedImage, Inode, SquashfsReader
from condainer.fs.reader.inodes import _IFMT
from condainer.mounts import system_tool, unmount

SUBTYPE = "condainer"  # mountinfo shows fstype "fuse.condainer"
TIMEOUT = 86400.0  # seconds the kernel may trust an entry, an attribute or a failed lookup

FUSE_READDIR_PLUS = 1
FUSE_FILL_DIR_PLUS = 2
FUSE_CAP_READDIRPLUS = 1 << 13
FUSE_CAP_READDIRPLUS_AUTO = 1 << 14
FUSE_CAP_CACHE_SYMLINKS = 1 << 23

log = logging.getLogger("condainer.fuse")

# Choices measured by request counts (see benchmarks/fuse_requests.py); env switches for re-measuring.
TRACE = bool(os.environ.get("CONDAINER_FUSE_TRACE"))
ZERO_MESSAGE_OPEN = os.environ.get("CONDAINER_FUSE_OPEN", "none") == "none"
PASS_OPENDIR_FLAGS = True  # set by _load_mfusepy from the libfuse version


def _load_mfusepy():
    """Import mfusepy bound to libfuse3 when it is installed (mfusepy itself prefers libfuse2 whenever
    both are, and its high-level layer only is served then), else to libfuse2.  A user's
    FUSE_LIBRARY_PATH or FUSE_LIBRARY_NAME is respected."""
    if not (os.environ.get("FUSE_LIBRARY_PATH") or os.environ.get("FUSE_LIBRARY_NAME")):
        from ctypes.util import find_library

        os.environ["FUSE_LIBRARY_NAME"] = "fuse3" if find_library("fuse3") else "fuse"
    try:
        import mfusepy
    except (OSError, AttributeError) as e:
        raise ToolMissing(f"libfuse not usable (install fuse3): {e}") from None
    global PASS_OPENDIR_FLAGS
    PASS_OPENDIR_FLAGS = (mfusepy.fuse_version_major, mfusepy.fuse_version_minor) >= (3, 16)
    return mfusepy


def _log_damage(seen: set, exc: Exception) -> None:
    """One log line per damaged structure, however often it is read."""
    msg = str(exc)
    if msg not in seen:
        seen.add(msg)
        log.error("damaged image: %s", msg)


def build_operations(reader: SquashfsReader, mfusepy, ready=None):
    """An mfusepy Operations object over ``reader``; ``ready()`` is called once INIT arrived."""
    FuseOSError = mfusepy.FuseOSError

    class SquashfsOperations(mfusepy.Operations):
        use_ns = True
        flag_nullpath_ok = False
        flag_nopath = False

        def __init__(self) -> None:
            self.reader = reader
            self.handles: dict[int, Inode] = {}
            self._fh = itertools.count(1)
            self.damaged: set = set()
            self.counts: dict[str, int] = {}
            self.count_requests = bool(os.environ.get("CONDAINER_FUSE_STATS"))
            self._count_lock = threading.Lock()

        # -- helpers -------------------------------------------------------------------------------

        def count(self, op: str, path=None) -> None:
            if self.count_requests:
                with self._count_lock:
                    self.counts[op] = self.counts.get(op, 0) + 1
                if TRACE:
                    log.info("request %s %s", op, path)

        def node(self, path) -> Inode:
            try:
                node = self.reader.resolve(path)
            except DamagedImage as e:
                _log_damage(self.damaged, e)
                raise FuseOSError(errno.EIO) from None
            if node is None:
                raise FuseOSError(errno.ENOENT)
            return node

        def guard(self, fn, *args):
            """Run a reader call: damage is EIO plus one log line; anything unexpected EIO plus a
            traceback in the log."""
            try:
                return fn(*args)
            except DamagedImage as e:
                _log_damage(self.damaged, e)
                raise FuseOSError(errno.EIO) from None
            except FuseOSError:
                raise
            except Exception:
                log.exception("unexpected error in %s", getattr(fn, "__name__", fn))
                raise FuseOSError(errno.EIO) from None

        # -- lifecycle -----------------------------------------------------------------------------

        def init_with_config(self, conn, config) -> None:
            if config is not None:
                config.entry_timeout = TIMEOUT
                config.attr_timeout = TIMEOUT
                config.negative_timeout = TIMEOUT
                config.kernel_cache = 1  # keep_cache on every open: pages survive close/reopen
                config.use_ino = 1  # st_ino is the squashfs inode number (hard links share it)
                config.readdir_ino = 1
            if conn is not None:
                want = conn.want
                if conn.capable & FUSE_CAP_CACHE_SYMLINKS:
                    want |= FUSE_CAP_CACHE_SYMLINKS
                if conn.capable & FUSE_CAP_READDIRPLUS:
                    # Always readdirplus: one request answers a listing and the lookups after it.
                    want |= FUSE_CAP_READDIRPLUS
                    want &= ~FUSE_CAP_READDIRPLUS_AUTO
                conn.want = want
            if ready is not None:
                ready()

        def destroy(self, path) -> None:
            if self.count_requests:
                log.info("requests: %s", " ".join(f"{k}={v}" for k, v in sorted(self.counts.items())))

        # -- reads ---------------------------------------------------------------------------------

        def getattr(self, path, fh=None):  # _Fuse.fgetattr answers without this dict
            return self.reader.getattr(self.node(path))

        def readlink(self, path):
            self.count("readlink")
            node = self.node(path)
            if not node.is_symlink:
                raise FuseOSError(errno.EINVAL)
            return node.target

        def open(self, path, fi):
            self.count("open")
            if fi.flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
                raise FuseOSError(errno.EROFS)
            node = self.node(path)
            if ZERO_MESSAGE_OPEN:
                # ENOSYS from open tells the kernel (>= 4.19) to stop sending OPEN and RELEASE and
                # to treat every open as keep_cache (fs/fuse/file.c, fuse_file_open): two requests
                # fewer per open, and reads find files by path.
                raise FuseOSError(errno.ENOSYS)
            fh = next(self._fh)
            self.handles[fh] = node
            fi.fh = fh
            fi.keep_cache = 1
            return 0

        def release(self, path, fi):
            self.count("release")
            self.handles.pop(fi.fh, None)
            return 0

        def read(self, path, size, offset, fi):  # see _Fuse.read
            raise FuseOSError(errno.EIO)

        def opendir(self, path):  # see _Fuse.opendir
            return 0

        def readdir(self, path, fh):  # see _Fuse.readdir_fuse_3
            return []

        def statfs(self, path):
            self.count("statfs")
            return self.reader.statfs()

        def access(self, path, amode):
            self.count("access")
            node = self.node(path)
            if amode & os.W_OK:
                raise FuseOSError(errno.EROFS)
            uid, gid, pid = mfusepy.fuse_get_context()
            if not permits(node.mode, node.uid, node.gid, amode, uid, caller_groups(pid, gid)):
                raise FuseOSError(errno.EACCES)
            return 0

        def getxattr(self, path, name, position=0):
            self.count("getxattr")
            node = self.node(path)
            value = self.guard(self.reader.xattrs, node).get(os.fsencode(name))
            if value is None:
                raise FuseOSError(mfusepy.ENOATTR)
            return value

        def listxattr(self, path):
            self.count("listxattr")
            node = self.node(path)
            return [os.fsdecode(k) for k in self.guard(self.reader.xattrs, node)]

        # -- every write is refused ----------------------------------------------------------------

        def _erofs(self, *args, **kwargs):
            raise FuseOSError(errno.EROFS)

        chmod = chown = create = link = mkdir = mknod = rename = rmdir = _erofs
        setxattr = removexattr = symlink = truncate = unlink = utimens = write = _erofs
        fallocate = _erofs

    if not PASS_OPENDIR_FLAGS:
        # libfuse < 3.16.1 drops the flags a high-level opendir sets (fixed by libfuse commit
        # 98eb808, "Pass cache_readdir and keep_cache from high level API"): an opendir in Python
        # would be a round trip that buys nothing, so libfuse answers opendir alone.
        SquashfsOperations.opendir = None
    return SquashfsOperations()


def _make_fuse_class(mfusepy):
    """mfusepy.FUSE with the wrappers that matter for speed and for the kernel's caches replaced."""
    c_stat = mfusepy.c_stat
    memset, memmove, sizeof = ctypes.memset, ctypes.memmove, ctypes.sizeof
    FuseOSError = mfusepy.FuseOSError

    class _Fuse(mfusepy.FUSE):
        def _wrapper(self, func, *args, **kwargs):
            # mfusepy answers unexpected exceptions with EINVAL; a reader's answer is EIO, logged.
            try:
                return func(*args, **kwargs) or 0
            except OSError as e:
                if isinstance(e.errno, int) and e.errno > 0:
                    return -e.errno
                log.exception("FUSE %s failed", func.__name__)
                return -errno.EIO
            except DamagedImage as e:
                _log_damage(self.operations.damaged, e)
                return -errno.EIO
            except Exception:
                log.exception("FUSE %s failed", func.__name__)
                return -errno.EIO
            except BaseException:
                log.critical("FUSE %s: fatal error, leaving the FUSE loop", func.__name__, exc_info=True)
                mfusepy.fuse_exit()
                return -errno.EFAULT

        def fgetattr(self, path, buf, fip):
            ops = self.operations
            ops.count("getattr", path)
            if fip:
                node = ops.handles.get(fip.contents.fh)
                if node is None:
                    node = ops.node(path)
            else:
                node = ops.node(path)
            memset(buf, 0, sizeof(c_stat))
            _fill_stat(buf.contents, node)
            return 0

        def read(self, path, buf, size, offset, fip):
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

        def opendir(self, path, fip):
            ops = self.operations
            ops.count("opendir")
            node = ops.node(path)
            if not node.is_dir:
                raise FuseOSError(errno.ENOTDIR)
            fi = fip.contents
            fi.fh = 0
            fi.keep_cache = 1  # the cached listing stays valid across opendirs
            fi.cache_readdir = 1  # the kernel answers later getdents from its own copy
            return 0

        def readdir_fuse_2(self, path, buf, filler, offset, fip):
            # libfuse2's filler takes no flags argument.
            return self.readdir_fuse_3(
                path, buf, lambda b, n, st, off, fl: filler(b, n, st, off), offset, fip, 0
            )

        def readdir_fuse_3(self, path, buf, filler, offset, fip, flags):
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
            st = c_stat()
            inode = ops.reader.inode
            end = len(entries) + 2
            for pos in range(offset, end):
                if pos < 2:
                    # Dot entries need their inode numbers: readdir(3) drops entries with d_ino 0.
                    memset(ctypes.byref(st), 0, sizeof(c_stat))
                    st.st_mode = stat.S_IFDIR
                    st.st_ino = node.ino if pos == 0 or node is ops.reader.root else node.parent
                    if filler(buf, b"." if pos == 0 else b"..", st, pos + 1, 0):
                        break
                    continue
                e = entries[pos - 2]
                memset(ctypes.byref(st), 0, sizeof(c_stat))
                if plus:
                    _fill_stat(st, ops.guard(inode, e.ref))
                    full = filler(buf, e.name, st, pos + 1, FUSE_FILL_DIR_PLUS)
                else:
                    st.st_ino = e.ino
                    st.st_mode = _IFMT[e.type]
                    full = filler(buf, e.name, st, pos + 1, 0)
                if full:
                    break
            return 0

        def readlink(self, path, buf, bufsize):
            ops = self.operations
            ops.count("readlink")
            node = ops.node(path)
            if not node.is_symlink:
                raise FuseOSError(errno.EINVAL)
            data = node.target[: bufsize - 1] + b"\0"
            memmove(buf, data, len(data))
            return 0

    return _Fuse


# ---------------------------------------------------------------------------------------------------
# Mounting


def _escape_opt(value: str) -> str:
    # libfuse splits -o on commas; a backslash protects one.
    return value.replace("\\", "\\\\").replace(",", "\\,")


def fuse_options(image: str, *, allow_other: bool = False) -> dict:
    """The -o options of our mounts: read-only, no setuid/devices, kernel-side permission checks,
    recognizable in /proc/self/mountinfo as fstype ``fuse.condainer`` with the image as source.

    CONDAINER_FUSE_DEFAULT_PERMISSIONS=0 drops default_permissions, so that access(2) and chdir
    reach the daemon's access handler (to test that path).  It is ignored with allow_other: without
    default_permissions the kernel would not check modes on open or path walks, and other users
    could read what the image's modes deny them."""
    opts = {
        "ro": True,
        "nosuid": True,
        "nodev": True,
        "default_permissions": True,
        "fsname": _escape_opt(image),
        "subtype": SUBTYPE,
    }
    if os.environ.get("CONDAINER_FUSE_DEFAULT_PERMISSIONS") == "0" and not allow_other:
        del opts["default_permissions"]
    if allow_other:
        opts["allow_other"] = True
    return opts


@contextlib.contextmanager
def _libfuse_handles_signals():
    """Let libfuse end its loop (and unmount) on SIGINT, SIGTERM and SIGHUP.

    libfuse installs its handlers only where a signal is at its default disposition, and a
    Python-level handler (the CLI maps SIGTERM to KeyboardInterrupt) never runs while the main
    thread sits in libfuse's C loop: a foreground mount would ignore SIGTERM for good."""
    saved = {}
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            saved[signum] = signal.signal(signum, signal.SIG_DFL)
        except ValueError:  # not the main thread: libfuse's own handlers decide
            pass
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def serve(
    image: str,
    mountpoint: str,
    *,
    foreground: bool = True,
    allow_other: bool = False,
    ready=None,
    reader: SquashfsReader | None = None,
) -> None:
    """Run the FUSE loop for ``image`` at ``mountpoint`` in this process until it is unmounted."""
    mfusepy = _load_mfusepy()
    if reader is None:
        reader = SquashfsReader(image)
    if fuse_api(mfusepy) == "low":
        from condainer.fs.lowlevel import serve_lowlevel

        opts = fuse_options(image, allow_other=allow_other)
        text = ",".join(k if v is True else f"{k}={v}" for k, v in opts.items())
        threads = os.environ.get("CONDAINER_FUSE_THREADS", "1") != "0"
        profile_to = os.environ.get("CONDAINER_FUSE_PROFILE")  # with CONDAINER_FUSE_THREADS=0
        profiler = None
        if profile_to:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        try:
            with _libfuse_handles_signals():
                serve_lowlevel(reader, mountpoint, text, mfusepy, timeout=TIMEOUT, ready=ready, threads=threads)
        finally:
            reader.close()
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile_to)
        return
    ops = build_operations(reader, mfusepy, ready=ready)
    fuse_cls = _make_fuse_class(mfusepy)
    opts = fuse_options(image, allow_other=allow_other)
    if mfusepy.fuse_version_major == 2:
        # libfuse2 has no init config to set these in (init_with_config): they are mount options.
        opts.update(use_ino=True, readdir_ino=True, kernel_cache=True, entry_timeout=TIMEOUT,
                    attr_timeout=TIMEOUT, negative_timeout=TIMEOUT)
    try:
        with _libfuse_handles_signals():
            fuse_cls(ops, mountpoint, raw_fi=True, foreground=foreground, **opts)
    except RuntimeError as e:
        raise MountError(f"{mountpoint}: FUSE mount failed ({e})") from None
    finally:
        reader.close()


def fuse_api(mfusepy) -> str:
    """ "low" (libfuse3's inode-based API, the fast one) or "high" (mfusepy's path-based FUSE
    class, for libfuse2); CONDAINER_FUSE_API=high|low overrides."""
    forced = os.environ.get("CONDAINER_FUSE_API")
    if forced in ("low", "high"):
        return forced
    return "low" if mfusepy.fuse_version_major == 3 else "high"


def _is_mountpoint(path: str) -> bool:
    try:
        return os.path.ismount(path)
    except OSError:
        return False


def check_mount_prerequisites(mountpoint: str) -> None:
    """Refuse early and in one line what would make the mount fail or hide data."""
    if not os.path.exists("/dev/fuse"):
        raise ToolMissing("/dev/fuse does not exist: FUSE is not available on this system")
    if not stat.S_ISCHR(os.stat("/dev/fuse").st_mode):
        raise ToolMissing("/dev/fuse is not a character device")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise ToolMissing("no permission to open /dev/fuse (ask for membership of its group)")
    if os.geteuid() != 0 and not (system_tool("fusermount3") or system_tool("fusermount")):
        raise ToolMissing("fusermount3 not found on PATH (package fuse3)")
    if not os.path.lexists(mountpoint):
        raise MountError(f"{mountpoint}: mount point does not exist")
    if not os.path.isdir(mountpoint):
        raise MountError(f"{mountpoint}: mount point is not a directory")
    if _is_mountpoint(mountpoint):
        raise MountError(f"{mountpoint}: something is already mounted there")
    try:
        if os.listdir(mountpoint):
            raise MountError(f"{mountpoint}: mount point is not empty")
    except OSError as e:
        raise MountError(f"{mountpoint}: cannot list mount point: {e.strerror}") from None


def default_log_path() -> str:
    base = os.environ.get("CONDAINER_LOG_DIR")
    if not base:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(cache, "condainer")
    return os.path.join(base, "fuse.log")


def mount_image(
    image: os.PathLike,
    mountpoint: os.PathLike,
    *,
    foreground: bool = False,
    allow_other: bool = False,
    ready_timeout: float = 10.0,
    log_path: os.PathLike | None = None,
) -> None:
    """Mount IMAGE read-only at MOUNTPOINT with the Python FUSE daemon; return when the mount is
    ready (daemon detached unless foreground) or raise ImageError/MountError with one line."""
    image = os.path.abspath(os.fspath(image))
    mountpoint = os.path.abspath(os.fspath(mountpoint))
    if not os.path.isfile(image):
        raise ImageError(f"{image}: no such image file")
    check_mount_prerequisites(mountpoint)
    SquashfsReader(image).close()  # a bad image fails here, before anything is mounted
    if foreground:
        serve(image, mountpoint, foreground=True, allow_other=allow_other)
        return

    log_path = os.fspath(log_path) if log_path else default_log_path()
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    try:
        log_start = os.path.getsize(log_path)
    except OSError:
        log_start = 0
    rfd, wfd = os.pipe()
    cmd = [sys.executable, "-m", "condainer.fs.fuse", "--ready-fd", str(wfd), "--log", log_path]
    if allow_other:
        cmd.append("--allow-other")
    cmd += [image, mountpoint]
    env = dict(os.environ)
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in [pkg_root, env.get("PYTHONPATH", "")] if p)
    try:
        with open(os.devnull, "rb") as devnull, open(log_path, "ab") as logf:
            proc = subprocess.Popen(
                cmd,
                stdin=devnull,
                stdout=logf,
                stderr=logf,
                pass_fds=(wfd,),
                start_new_session=True,
                cwd="/",
                env=env,
                close_fds=True,
            )
    finally:
        os.close(wfd)
    try:
        message = _wait_ready(rfd, proc, ready_timeout)
    finally:
        os.close(rfd)
    if message != "ok":
        if proc.poll() is None:
            proc.terminate()
            _lazy_unmount(mountpoint)
        reason = _libfuse_reason(log_path, log_start)
        raise MountError(f"{mountpoint}: {message}" + (f": {reason}" if reason else ""))
    try:
        os.statvfs(mountpoint)  # blocks until the daemon answered INIT; proves the mount serves
    except OSError as e:
        proc.terminate()
        _lazy_unmount(mountpoint)
        raise MountError(f"{mountpoint}: mount does not answer: {e.strerror}") from None


def _libfuse_reason(log_path: str, start: int) -> str:
    """The last line libfuse or fusermount3 wrote to the daemon's stderr (our own log lines carry
    a timestamp; theirs do not)."""
    try:
        with open(log_path, "rb") as f:
            f.seek(start)
            lines = f.read(65536).decode(errors="replace").splitlines()
    except OSError:
        return ""
    foreign = [
        line.strip()
        for line in lines
        if line.strip() and not line[:4].isdigit() and "Ignoring invalid max threads" not in line
    ]
    return foreign[-1] if foreign else ""


def _wait_ready(rfd: int, proc: subprocess.Popen, timeout: float) -> str:
    import select

    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return f"FUSE daemon not ready after {timeout:g} s"
        r, _, _ = select.select([rfd], [], [], min(left, 0.5))
        if r:
            chunk = os.read(rfd, 4096)
            if not chunk:
                code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                return (
                    buf.decode(errors="replace").strip()
                    or f"FUSE daemon exited with status {code} before the mount was ready"
                )
            buf += chunk
            if b"\n" in buf:
                return buf.split(b"\n", 1)[0].decode(errors="replace")
        elif proc.poll() is not None and not buf:
            return f"FUSE daemon exited with status {proc.returncode} before the mount was ready"


def _lazy_unmount(mountpoint: str) -> None:
    """Best-effort cleanup of a mount whose daemon never became ready."""
    with contextlib.suppress(MountError):
        unmount(mountpoint, lazy=True)


# ---------------------------------------------------------------------------------------------------
# The daemon: python -m condainer.fs.fuse [--ready-fd N] IMAGE MOUNTPOINT


def _daemon_main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m condainer.fs.fuse")
    p.add_argument("--ready-fd", type=int)
    p.add_argument("--log")
    p.add_argument("--allow-other", action="store_true")
    p.add_argument("--debug", action="store_true")
    p.add_argument("image")
    p.add_argument("mountpoint")
    args = p.parse_args(argv)
    tag = f"{os.getpid()} {args.mountpoint}"
    logging.basicConfig(
        filename=args.log,
        level=logging.DEBUG if args.debug else logging.INFO,
        format=f"%(asctime)s {tag}: %(message)s",
    )
    logging.getLogger("mfusepy").setLevel(logging.WARNING)

    sent = False

    def report(line: str) -> None:
        nonlocal sent
        if args.ready_fd is not None and not sent:
            sent = True
            try:
                os.write(args.ready_fd, (" ".join(line.split()) + "\n").encode())
                os.close(args.ready_fd)
            except OSError:
                pass

    try:
        reader = SquashfsReader(args.image)
        log.info("serving %s", args.image)
        serve(
            args.image,
            args.mountpoint,
            foreground=True,
            allow_other=args.allow_other,
            ready=lambda: report("ok"),
            reader=reader,
        )
    except CondainerError as e:
        log.error("%s", e.message)
        report(e.message)
        return 1
    except BaseException as e:  # the parent must hear something, whatever happened
        log.exception("FUSE daemon failed")
        report(f"FUSE daemon failed: {type(e).__name__}: {e}")
        return 1
    if not sent:
        report("FUSE loop ended before the mount was ready (see the log)")
        return 1
    log.info("unmounted")
    return 0


if __name__ == "__main__":
    sys.exit(_daemon_main())
