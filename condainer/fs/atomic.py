"""A file written beside its final name, then renamed over it: a reader sees the old file or the
new one, never a part, and a failure (a full disk, Ctrl-C, a refused tree) leaves neither a part nor
a stray temporary file. The one scheme for images (the writer's and mksquashfs's) and for
condainer's own small files (condainer.lock, launchers, records, caches).
"""

from __future__ import annotations

import os
import secrets

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def temporary_beside(path: str | bytes, mode: int = 0o600) -> tuple[int, str | bytes]:
    """(descriptor open for writing, name) of a new file ``.NAME.<random>.tmp`` in PATH's directory,
    never an existing file and never through a link; the caller renames it over PATH or removes it."""
    directory, name = os.path.split(path)
    tail = f".{secrets.token_hex(6)}.tmp"
    tmp = os.path.join(directory, b"." + name + tail.encode()) if isinstance(name, bytes) \
        else os.path.join(directory, f".{name}{tail}")
    return os.open(tmp, _FLAGS, mode), tmp


def write_atomically(path: str, data: bytes, *, mode: int = 0o644, durable: bool = False) -> None:
    """Write PATH with DATA and MODE through a temporary file beside it; DURABLE also flushes it to
    disk before the rename. Any failure is raised, with the temporary file removed."""
    fd, tmp = temporary_beside(path)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def umask() -> int:
    """This process's umask (what a plain file written now gets: 0o666 & ~umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
