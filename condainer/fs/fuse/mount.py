"""Mounting from the caller's side: check the mount point, start the daemon, wait until it serves.

``mount_image`` starts ``python -m condainer.fs.fuse`` (__main__.py) in a new session and returns
once the daemon reports through a pipe that the kernel's INIT arrived and the mount answers statvfs;
a daemon that fails says why in one line, which becomes the MountError. Where the daemon logs is
the caller's choice (condainer: fuse.log in its log directory).
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import time

from condainer.errors import ImageError, MountError, ToolMissing
from condainer.fs.host import system_tool, unmount_commands
from condainer.fs.reader import SquashfsReader


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


def mount_image(
    image: os.PathLike | str,
    mountpoint: os.PathLike | str,
    *,
    log_path: os.PathLike | str,
    foreground: bool = False,
    allow_other: bool = False,
    ready_timeout: float = 10.0,
    checked: bool = False,
) -> None:
    """Mount IMAGE read-only at MOUNTPOINT with the Python FUSE daemon; return when the mount is
    ready (daemon detached unless foreground) or raise ImageError/MountError with one line.
    LOG_PATH: the file the detached daemon appends its log (and libfuse's complaints) to.
    CHECKED: the caller (backends.mount.mount) has checked the image, the mount point and FUSE, and
    the daemon's own open of the image is the only parse."""
    image = os.path.abspath(os.fspath(image))
    mountpoint = os.path.abspath(os.fspath(mountpoint))
    if not checked:
        if not os.path.isfile(image):
            raise ImageError(f"{image}: no such image file")
        check_mount_prerequisites(mountpoint)
        SquashfsReader(image).close()  # a bad image fails here, before anything is mounted
    if foreground:
        from condainer.fs.fuse.serve import serve

        serve(image, mountpoint, foreground=True, allow_other=allow_other)
        return

    log_path = os.fspath(log_path)
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    try:
        log_start = os.path.getsize(log_path)
    except OSError:
        log_start = 0
    proc, rfd = _start_daemon(image, mountpoint, log_path, allow_other)
    try:
        message = _wait_ready(rfd, proc, ready_timeout)
    finally:
        os.close(rfd)
    if message != "ok":
        if proc.poll() is None:
            proc.terminate()
            _lazy_unmount(mountpoint)
        if message.startswith(f"{image}: "):
            raise ImageError(message)  # the daemon could not read the image: its one line names it
        reason = _libfuse_reason(log_path, log_start)
        raise MountError(f"{mountpoint}: {message}" + (f": {reason}" if reason else ""))
    try:
        os.statvfs(mountpoint)  # blocks until the daemon answered INIT; proves the mount serves
    except OSError as e:
        proc.terminate()
        _lazy_unmount(mountpoint)
        raise MountError(f"{mountpoint}: mount does not answer: {e.strerror}") from None


def _start_daemon(image: str, mountpoint: str, log_path: str, allow_other: bool) -> tuple[subprocess.Popen, int]:
    """The daemon, started in a new session with its output appended to LOG_PATH, and the read end
    of the pipe it reports on: the pipe's write end is closed here, so a daemon that dies is EOF."""
    rfd, wfd = os.pipe()
    cmd = [sys.executable, "-m", "condainer.fs.fuse", "--ready-fd", str(wfd), "--log", log_path]
    if allow_other:
        cmd.append("--allow-other")
    cmd += [image, mountpoint]
    env = dict(os.environ)
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
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
    return proc, rfd


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
    """Best-effort cleanup of a mount whose daemon never became ready: detach it. When the daemon
    has taken the mount down already, the command fails, harmlessly."""
    for command in unmount_commands(fuse=True, lazy=True):
        with contextlib.suppress(OSError):
            if subprocess.run([*command, mountpoint], capture_output=True).returncode == 0:
                return


# ---------------------------------------------------------------------------------------------------
# The daemon: python -m condainer.fs.fuse [--ready-fd N] IMAGE MOUNTPOINT
