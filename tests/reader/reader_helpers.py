"""Shared by the reader tests: a varied source tree, mksquashfs, mounts that always come down, and a
snapshot of a mounted tree to compare mounts with."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import shutil
import socket
import stat
import subprocess
import time

BLOCK = 128 * 1024
IS_ROOT = os.geteuid() == 0


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def fuse_usable() -> bool:
    return os.access("/dev/fuse", os.R_OK | os.W_OK) and (IS_ROOT or have("fusermount3"))


def _data(rng: random.Random, n: int) -> bytes:
    # Half compressible text, half noise, so blocks of both kinds (compressed and stored) occur.
    text = b"".join(b"line %d of something compressible\n" % i for i in range(n // 30 + 1))[: n // 2]
    return text + rng.randbytes(n - len(text))


def build_tree(root: str, *, big_dir: int = 3000, seed: int = 1) -> None:
    """Every kind of entry and every size edge a squashfs reader must get right."""
    rng = random.Random(seed)
    os.makedirs(root)
    j = lambda *p: os.path.join(root, *p)  # noqa: E731
    for n in (0, 1, 4095, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, 3 * BLOCK + 17, 1_000_003):
        with open(j(f"size_{n}"), "wb") as f:
            f.write(_data(rng, n))
    with open(j("zeros_2blocks"), "wb") as f:
        f.write(bytes(2 * BLOCK + 5))
    shutil.copy(j("size_1000003"), j("dup_of_1000003"))  # dedup in the image
    # sparse: holes around data, a hole at the end
    with open(j("sparse"), "wb") as f:
        f.seek(5 * BLOCK + 100)
        f.write(b"middle")
        f.seek(9 * BLOCK)
        f.write(rng.randbytes(BLOCK))
        f.truncate(20 * BLOCK + 3)
    # hard links, one across directories
    os.makedirs(j("links", "sub"))
    with open(j("links", "target"), "wb") as f:
        f.write(b"hard linked\n")
    os.link(j("links", "target"), j("links", "second"))
    os.link(j("links", "target"), j("links", "sub", "third"))
    os.symlink("target", j("links", "rel"))
    os.symlink("/etc/hostname", j("links", "abs"))
    os.symlink("nowhere/at/all", j("links", "dangling"))
    os.symlink("sub", j("links", "to_dir"))
    os.symlink("x" * 1000, j("links", "long_target"))
    # xattrs: user, trusted, security, empty values, a large value, on files, dirs and symlinks
    os.makedirs(j("xattrs"))
    with open(j("xattrs", "file"), "wb") as f:
        f.write(b"x\n")
    os.setxattr(j("xattrs", "file"), "user.plain", b"value")
    os.setxattr(j("xattrs", "file"), "user.empty", b"")
    os.setxattr(j("xattrs", "file"), "user.binary", bytes(range(256)))
    os.setxattr(j("xattrs", "file"), "user.big", b"B" * 3000)
    os.setxattr(j("xattrs"), "user.on_dir", b"d")
    if IS_ROOT:
        os.setxattr(j("xattrs", "file"), "security.test", b"sec")
        os.setxattr(j("xattrs", "file"), "trusted.test", b"")
    with open(j("xattrs", "shared_value"), "wb") as f:
        f.write(b"y\n")
    os.setxattr(j("xattrs", "shared_value"), "user.big", b"B" * 3000)  # same value: stored once
    # special files
    os.makedirs(j("special"))
    os.mkfifo(j("special", "fifo"))
    if IS_ROOT:
        os.mknod(j("special", "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(j("special", "blk"), 0o640 | stat.S_IFBLK, os.makedev(259, 70000 & 0xFFFFF))
    s = socket.socket(socket.AF_UNIX)
    s.bind(j("special", "sock"))
    s.close()
    # modes, owners, times, names
    os.makedirs(j("modes", "sticky"))
    os.chmod(j("modes", "sticky"), 0o1777)
    for name, mode in (("suid", 0o4755), ("sgid", 0o2711), ("none", 0o000), ("ro", 0o444)):
        with open(j("modes", name), "wb") as f:
            f.write(name.encode())
        os.chmod(j("modes", name), mode)
    if IS_ROOT:
        with open(j("modes", "bigids"), "wb") as f:
            f.write(b"ids")
        os.chown(j("modes", "bigids"), 100000, 200000)
        os.chown(j("modes", "sticky"), 1234, 5678)
    odd = os.path.join(os.fsencode(root), b"names")
    os.makedirs(odd)
    for name in (b"\xff\xfe not utf-8", b"space and\ttab", "ünïcødé".encode(), b"n" * 255, b"-dash"):
        with open(os.path.join(odd, name), "wb") as f:
            f.write(name)
    deep = j("deep")
    for i in range(40):
        deep = os.path.join(deep, f"d{i}")
    os.makedirs(deep)
    with open(os.path.join(deep, "bottom"), "wb") as f:
        f.write(b"bottom\n")
    os.makedirs(j("empty_dir"))
    # a big directory: several headers and metadata blocks
    os.makedirs(j("bigdir"))
    for i in range(big_dir):
        with open(j("bigdir", f"entry_{i:05d}_{'p' * (i % 40)}"), "wb") as f:
            f.write(b"%d\n" % i)
    # varied mtimes, set last (children change their directory's mtime)
    for i, (dirpath, _dirnames, filenames) in enumerate(os.walk(root, topdown=False)):
        for k, name in enumerate(filenames):
            p = os.path.join(dirpath, name)
            os.utime(p, (1_600_000_000 + i * 1000 + k, 1_600_000_000 + i * 1000 + k), follow_symlinks=False)
        os.utime(dirpath, (1_500_000_000 + i, 1_500_000_000 + i))


def mksquashfs(src: str, image: str, comp: str, *extra: str) -> str:
    subprocess.run(
        ["mksquashfs", src, image, "-comp", comp, "-noappend", "-no-progress", "-quiet", *extra],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return image


# -- mounts ------------------------------------------------------------------------------------------


def unmount(mnt: str) -> None:
    """Unmount, whatever state the mount is in: fusermount3 -u, umount, then lazy umount."""
    for cmd in (
        ["fusermount3", "-u", mnt],
        ["umount", mnt],
        ["umount", "-l", mnt],
        ["fusermount3", "-u", "-z", mnt],
    ):
        if not os.path.ismount(mnt):
            return
        if have(cmd[0]):
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    for _ in range(50):
        if not os.path.ismount(mnt):
            return
        time.sleep(0.1)


@contextlib.contextmanager
def fuse_mounted(image: str, mnt: str, log_path: str | None = None):
    from condainer.fs.fuse import mount_image

    os.makedirs(mnt, exist_ok=True)
    try:
        mount_image(image, mnt, log_path=log_path)
        yield mnt
    finally:
        unmount(mnt)


@contextlib.contextmanager
def kernel_mounted(image: str, mnt: str):
    os.makedirs(mnt, exist_ok=True)
    try:
        subprocess.run(
            ["mount", "-o", "loop,ro", "-t", "squashfs", image, mnt],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        yield mnt
    finally:
        unmount(mnt)


# -- snapshots ---------------------------------------------------------------------------------------


ABSENT_XATTR = "user.condainer-test-absent"


def snapshot(root: str, *, content: bool = True) -> dict:
    """Everything stat, readlink, listxattr/getxattr and read say about a tree, keyed by path.

    Errors of listxattr and of getxattr for a name no entry has are recorded, not raised: what
    they are is part of what a mount shows.

    Hard links show as equal st_ino values; the root's own entry is compared too."""
    root_b = os.fsencode(root)
    out: dict[bytes, tuple] = {}
    stack = [b""]
    while stack:
        rel = stack.pop()
        path = root_b + rel
        st = os.lstat(path)
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError as e:  # the kernel's squashfs: EOPNOTSUPP on some inodes of an image without xattrs
            xattrs = ("listxattr failed", errno.errorcode.get(e.errno, e.errno))
        else:
            xattrs = tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))
        try:
            os.getxattr(path, ABSENT_XATTR, follow_symlinks=False)
            probe = "present"
        except OSError as e:  # ENODATA, or EOPNOTSUPP on an image without xattrs
            probe = errno.errorcode.get(e.errno, e.errno)
        extra = None
        if stat.S_ISREG(st.st_mode) and content:
            with open(path, "rb") as f:
                extra = hashlib.sha256(f.read()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            extra = os.readlink(path)
        out[rel or b"/"] = (
            stat.S_IFMT(st.st_mode),
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            st.st_mtime_ns,
            st.st_size,
            st.st_nlink,
            st.st_rdev,
            st.st_ino,
            st.st_blocks,
            xattrs,
            probe,
            extra,
        )
        if stat.S_ISDIR(st.st_mode):
            names = sorted(os.listdir(path))
            stack.extend(rel + b"/" + n for n in reversed(names))
    return out


FIELDS = (
    "type",
    "mode",
    "uid",
    "gid",
    "mtime_ns",
    "size",
    "nlink",
    "rdev",
    "ino",
    "blocks",
    "xattrs",
    "absent_xattr",
    "content",
)


def diff_snapshots(a: dict, b: dict, limit: int = 20) -> list[str]:
    problems = []
    for path in sorted(set(a) | set(b)):
        if path not in a or path not in b:
            problems.append(f"{path!r}: only in {'first' if path in a else 'second'}")
            continue
        for name, x, y in zip(FIELDS, a[path], b[path], strict=True):
            if x != y:
                problems.append(f"{path!r}: {name} {x!r} != {y!r}")
        if len(problems) >= limit:
            break
    return problems
