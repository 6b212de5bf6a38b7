"""Linux user and mount namespaces, as an unprivileged user needs them for a private mount.

A process that creates a user namespace holds every capability inside it, so it may mount FUSE
there (Linux >= 4.18) and nobody outside sees the mount. Our own uid and gid are mapped to
themselves, so the commands that later join the namespace run as the user, not as root; the
daemon that mounts keeps CAP_SYS_ADMIN across its exec as an *ambient* capability, which only it
gets. Standard library only (ctypes for what os lacks before Python 3.12).
"""

from __future__ import annotations

import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CAP_SYS_ADMIN = 21
_PR_SET_PDEATHSIG = 1
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_CAPABILITY_VERSION_3 = 0x20080522
MIN_KERNEL = (4, 18)  # FUSE mounts inside a user namespace

_libc = None


def _c():
    """libc through ctypes, loaded on first use (ctypes is not on a joining rank's path)."""
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _read_int(path: str) -> int | None:
    try:
        with open(path, "rb") as fh:
            return int(fh.read().strip() or b"0")
    except (OSError, ValueError):
        return None


def sysctl_problem() -> str | None:
    """Why the kernel's settings forbid unprivileged user namespaces, or None (read without trying)."""
    release = os.uname().release.split("-")[0].split(".")
    try:
        version = (int(release[0]), int(release[1]))
    except (IndexError, ValueError):
        version = MIN_KERNEL
    if version < MIN_KERNEL:
        return f"kernel {os.uname().release} is older than 4.18 (no FUSE mounts in user namespaces)"
    if _read_int("/proc/sys/user/max_user_namespaces") == 0:
        return "user namespaces are disabled (sysctl user.max_user_namespaces = 0)"
    if _read_int("/proc/sys/kernel/unprivileged_userns_clone") == 0:
        return "unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone = 0)"
    return None


def enter_new(uid: int, gid: int) -> None:
    """Make this (single-threaded) process the first of a new user and mount namespace, with UID and
    GID mapped to themselves. Mounts made here stay here: the host's mount table never shows them."""
    if hasattr(os, "unshare"):
        os.unshare(CLONE_NEWUSER | CLONE_NEWNS)
    else:
        _check(_c().unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare")
    # Unprivileged: one line each, and setgroups must be denied before the gid map is written.
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1\n"), ("gid_map", f"{gid} {gid} 1\n")):
        with open(f"/proc/self/{name}", "w") as fh:
            fh.write(text)


def keep_mount_capability() -> None:
    """Let the next program we exec keep CAP_SYS_ADMIN (as an ambient capability): the FUSE daemon
    then mounts by itself, inside our namespace, without fusermount3."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    libc = _c()
    header, data = Header(_CAPABILITY_VERSION_3, 0), (Data * 2)()
    _check(libc.capget(ctypes.byref(header), data), "capget")
    data[0].inheritable |= 1 << CAP_SYS_ADMIN
    _check(libc.capset(ctypes.byref(header), data), "capset")
    _check(libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, 0, 0), "prctl(PR_CAP_AMBIENT)")


def join(pid: int) -> None:
    """Enter the user and mount namespaces of PID (a holder of ours) and keep the working directory.
    The caller must be single-threaded; its credentials stay its own."""
    fds = [os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC) for name in ("user", "mnt")]
    try:
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = None
        here = os.open(".", os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY) if cwd is None else -1
        for fd, kind in zip(fds, (CLONE_NEWUSER, CLONE_NEWNS), strict=True):
            if hasattr(os, "setns"):
                os.setns(fd, kind)
            else:
                _check(_c().setns(fd, kind), "setns")
        # Entering a mount namespace moves us to its root directory: go back to where we were.
        if cwd is not None:
            try:
                os.chdir(cwd)
            except OSError:
                pass
        else:
            os.fchdir(here)
            os.close(here)
    finally:
        for fd in fds:
            os.close(fd)


def mount_namespace(pid: int | str = "self") -> str | None:
    """The identity of PID's mount namespace (``mnt:[4026531841]``), or None when we may not see it."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None
