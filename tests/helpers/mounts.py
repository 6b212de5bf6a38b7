"""Mounting an image with every reader the tests compare, and unmounting whatever state it is in.

``kernel_mount`` (mount -o loop), ``squashfuse_mount`` (squashfuse_ll), ``python_mount`` (our FUSE
daemon through mount_image); each is a context manager that always unmounts, with ``unmount``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time

IS_ROOT = os.geteuid() == 0
HAVE_FUSE = bool(os.path.exists("/dev/fuse") and shutil.which("squashfuse_ll") and shutil.which("fusermount3"))
HAVE_UNSQUASHFS = shutil.which("unsquashfs") is not None


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def fuse_usable() -> bool:
    return os.access("/dev/fuse", os.R_OK | os.W_OK) and (IS_ROOT or have("fusermount3"))


def is_mounted(mnt: os.PathLike | str) -> bool:
    """MNT is in the mount table (also when its FUSE daemon died and stat fails, where
    os.path.ismount says False)."""
    from condainer.mounts import find_mount

    return find_mount(mnt) is not None


def unmount(mnt: os.PathLike | str) -> None:
    """Unmount, whatever state the mount is in (stale included): fusermount3 -u, umount, then lazy."""
    mnt = os.fspath(mnt)
    for cmd in (
        ["fusermount3", "-u", mnt],
        ["umount", mnt],
        ["umount", "-l", mnt],
        ["fusermount3", "-u", "-z", mnt],
    ):
        if not is_mounted(mnt):
            return
        if have(cmd[0]):
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    for _ in range(50):
        if not is_mounted(mnt):
            return
        time.sleep(0.1)


@contextlib.contextmanager
def _mount_point(mnt: str | None, prefix: str):
    """MNT (created if missing), or a fresh temporary directory removed afterwards."""
    if mnt is not None:
        os.makedirs(mnt, exist_ok=True)
        yield mnt
        return
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(tmp)


@contextlib.contextmanager
def python_mount(image: str, mnt: str | None = None, log_path: str | None = None):
    """IMAGE mounted by condainer's FUSE daemon at MNT (a temporary directory if None)."""
    from condainer.backends.mount import fuse_log_path
    from condainer.fs.fuse import mount_image

    with _mount_point(mnt, "sqp-") as where:
        try:
            mount_image(image, where, log_path=log_path or fuse_log_path())
            yield where
        finally:
            unmount(where)


@contextlib.contextmanager
def kernel_mount(image, mnt: str | None = None):
    """IMAGE mounted by the kernel's squashfs (mount -o loop,ro) at MNT (a temporary directory if None)."""
    with _mount_point(mnt, "sqk-") as where:
        try:
            subprocess.run(
                ["mount", "-o", "loop,ro", "-t", "squashfs", os.fspath(image), where],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            yield where
        finally:
            unmount(where)


@contextlib.contextmanager
def squashfuse_mount(image, mnt: str | None = None):
    """IMAGE mounted by squashfuse_ll at MNT (a temporary directory if None)."""
    with _mount_point(mnt, "sqf-") as where:
        try:
            subprocess.run(["squashfuse_ll", os.fspath(image), where], check=True, capture_output=True)
            yield where
        finally:
            unmount(where)
