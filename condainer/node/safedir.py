"""Directories we create in shared places such as /tmp, made and checked so other users cannot interfere."""

import fcntl
import os
import stat

from condainer.errors import CondainerError


def ensure_private_dir(path: os.PathLike | str, *, what: str = "directory") -> str:
    """Create PATH with mode 0700, or accept it only if it is a real directory that we own and
    that nobody else can write to (another user's directory or symlink in /tmp is refused).
    Returns PATH as a string (no pathlib: `cnd exec` on every rank passes here)."""
    p = os.fspath(path)
    try:
        st = _lstat_or_make(p)
    except FileNotFoundError:
        raise CondainerError(f"cannot create {what} {p}: {os.path.dirname(p)} does not exist") from None
    except OSError as exc:
        raise CondainerError(f"cannot create {what} {p}: {exc.strerror}") from exc
    if stat.S_ISLNK(st.st_mode):
        raise CondainerError(f"{what} {p} is a symlink: refusing to use it")
    if not stat.S_ISDIR(st.st_mode):
        raise CondainerError(f"{what} {p} exists and is not a directory")
    if st.st_uid != os.geteuid():
        raise CondainerError(f"{what} {p} belongs to another user (uid {st.st_uid}): refusing to use it")
    if st.st_mode & 0o022:
        raise CondainerError(f"{what} {p} is writable by others: refusing to use it")
    return p


def lock_exclusive(path: str, *, what: str, dir_checked: bool = False) -> int:
    """An exclusive flock of the file PATH (made 0600) inside a private directory (made or checked
    as ensure_private_dir does, unless DIR_CHECKED says this process did so already); the returned
    descriptor holds it. An idle clean-up removes lock file and directory while others may wait on
    the lock: whoever then gets a lock on a removed file makes both again."""
    directory = os.path.dirname(path)
    while True:
        if not dir_checked:
            ensure_private_dir(directory, what=what)
            dir_checked = True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            dir_checked = False  # the directory was removed as idle: make it again
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            return fd
        os.close(fd)  # we waited on a lock file that its holder removed: start over
        dir_checked = False


def _lstat_or_make(p: str) -> os.stat_result:
    """lstat P, making it (0700) first if it is not there: one call on every rank but the first.
    Made again if an idle clean-up removes it in between; a missing parent raises FileNotFoundError."""
    for _ in range(3):
        try:
            return os.lstat(p)
        except FileNotFoundError:
            pass
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            pass  # made by another process just now: checked like any other
    return os.lstat(p)


def remove_private_dir(path: os.PathLike | str) -> None:
    """Remove PATH if it is an empty directory of ours (an idle mount point): never a symlink, never
    another user's, never one that is still mounted or holds anything (rmdir refuses those), and
    never while a private-namespace mount of any user sits on it (each holds a shared flock on it,
    see node/holder.py: removing it would detach their mounts)."""
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # a private mount (of any user) uses it
        try:
            os.rmdir(p)
        except OSError:
            pass  # not empty, or a mount point (EBUSY): leave it
    finally:
        os.close(fd)
