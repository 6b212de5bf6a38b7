"""Fixtures for the squashfs writer tests: source trees, and readers whose mounts always come down."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from condainer.fs.options import PackOptions
from condainer.fs.writer import pack_tree

IS_ROOT = os.geteuid() == 0
HAVE_FUSE = os.path.exists("/dev/fuse") and shutil.which("squashfuse_ll") and shutil.which("fusermount3")
HAVE_UNSQUASHFS = shutil.which("unsquashfs") is not None
BS = 128 * 1024


def pack(src, image, **kw) -> None:
    kw.setdefault("progress", False)
    kw.setdefault("processors", 1)
    pack_tree(src, image, PackOptions(**kw))


def _umount(argv: list[str], mnt: str) -> None:
    for _ in range(20):
        if subprocess.run(argv + [mnt], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(argv[:1] + ["-l" if argv[0] == "umount" else "-uz", mnt], capture_output=True)


@contextlib.contextmanager
def kernel_mount(image):
    mnt = tempfile.mkdtemp(prefix="sqk-")
    try:
        subprocess.run(
            ["mount", "-o", "loop,ro", "-t", "squashfs", os.fspath(image), mnt],
            check=True,
            capture_output=True,
        )
        try:
            yield mnt
        finally:
            _umount(["umount"], mnt)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(mnt)


@contextlib.contextmanager
def squashfuse_mount(image):
    mnt = tempfile.mkdtemp(prefix="sqf-")
    try:
        subprocess.run(["squashfuse_ll", os.fspath(image), mnt], check=True, capture_output=True)
        try:
            yield mnt
        finally:
            _umount(["fusermount3", "-u"], mnt)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(mnt)


def unsquashfs(image, dest) -> str:
    """Extract with unsquashfs (xattrs included); returns the extracted root."""
    out = os.path.join(os.fspath(dest), "x")
    proc = subprocess.run(
        ["unsquashfs", "-no-progress", "-xattrs", "-d", out, os.fspath(image)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "failed" not in proc.stderr.lower(), proc.stderr
    return out


@pytest.fixture
def stack():
    """An ExitStack closed at teardown: every mount entered through it is unmounted, even on failure."""
    with contextlib.ExitStack() as s:
        yield s


def make_socket(path: bytes) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(path)
    finally:
        s.close()
