"""Hand-made source trees that hit every edge of the format: make_edge_tree (the writer tests'),
build_tree (the reader tests'); both cover every inode type, size edge and odd name."""

from __future__ import annotations

import os
import random
import shutil
import socket
import stat

from tests.helpers.mounts import IS_ROOT

BS = BLOCK = 128 * 1024


def make_socket(path: bytes) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(path)
    finally:
        s.close()

ODD_NAMES = [
    b"\xff\xfe\x80",
    b"sp ace",
    b"new\nline",
    b"\x01ctl\x7f",
    b"tab\there",
    b"x" * 255,
    "h\u00e9llo-\u4e16\u754c".encode(),
    b"-leading-dash",
    b"..dots",
    b"a\\b",
]


def write(path: bytes, data: bytes, mode: int | None = None, mtime: int | None = None) -> None:
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def make_edge_tree(root: bytes, outside: bytes, utf8_only: bool = False) -> None:
    """Every inode type and every pitfall the design notes list; ``outside`` is a sibling directory.

    ``utf8_only`` leaves out names that are not UTF-8 (for PySquashfsImage, which decodes names).
    """
    rnd = random.Random(1234)
    j = os.path.join
    os.makedirs(root)
    os.makedirs(outside, exist_ok=True)
    # Sizes around the block size, compressible and not; duplicates for dedup.
    sizes = {
        b"empty": 0,
        b"one": 1,
        b"bs-1": BS - 1,
        b"bs": BS,
        b"bs+1": BS + 1,
        b"3bs": 3 * BS,
        b"2bs+5": 2 * BS + 5,
    }
    os.makedirs(j(root, b"sizes"))
    for name, size in sizes.items():
        write(j(root, b"sizes", name), rnd.randbytes(size))
    text = b"".join(b"line %d of some compressible text\n" % i for i in range(20000))
    write(j(root, b"sizes", b"text"), text)
    os.makedirs(j(root, b"dup", b"a"))
    os.makedirs(j(root, b"dup", b"b"))
    big = rnd.randbytes(2 * BS + 777)
    for d in (b"a", b"b"):
        write(j(root, b"dup", d, b"big"), big)
        write(j(root, b"dup", d, b"small"), b"same small content\n")
        write(j(root, b"dup", d, b"text"), text)
    # Sparse: wholly, with holes between data, and a hole at the end.
    os.makedirs(j(root, b"sparse"))
    with open(j(root, b"sparse", b"all-holes"), "wb") as f:
        f.truncate(8 * BS)
    with open(j(root, b"sparse", b"holes"), "wb") as f:
        f.write(b"start")
        f.seek(5 * BS)
        f.write(rnd.randbytes(BS + 3))
        f.seek(10 * BS + 17)
        f.write(b"end")
    with open(j(root, b"sparse", b"hole-at-end"), "wb") as f:
        f.write(b"x" * 100)
        f.truncate(4 * BS)
    write(j(root, b"sparse", b"zeros-tail"), bytes(BS + 100))
    # Large directories: more than one header (256 entries) and more than one metadata block.
    for count in (300, 3000):
        d = j(root, b"dir%d" % count)
        os.makedirs(d)
        for i in range(count):
            write(j(d, b"entry-%05d-%s" % (i, b"n" * (i % 40))), b"%d" % i if i % 3 else b"")
    # Deep path.
    deep = root
    for i in range(40):
        deep = j(deep, b"level%02d" % i)
    os.makedirs(deep)
    write(j(deep, b"bottom"), b"deep\n")
    # Names of any bytes but "/" and NUL.
    os.makedirs(j(root, b"names"))
    for name in ODD_NAMES:
        try:
            name.decode()
        except UnicodeDecodeError:
            if utf8_only:
                continue
        write(j(root, b"names", name), name)
    # Hard links: a group of three inside the tree, and one to a file outside it.
    os.makedirs(j(root, b"links", b"sub"))
    write(j(root, b"links", b"orig"), b"linked content\n")
    os.link(j(root, b"links", b"orig"), j(root, b"links", b"second"))
    os.link(j(root, b"links", b"orig"), j(root, b"links", b"sub", b"third"))
    write(j(outside, b"outside"), b"outside content\n")
    os.link(j(outside, b"outside"), j(root, b"links", b"to-outside"))
    write(j(root, b"links", b"big-orig"), rnd.randbytes(BS + 50))
    os.link(j(root, b"links", b"big-orig"), j(root, b"links", b"big-second"))
    # Symlinks: relative, absolute, dangling, to a directory, long target.
    os.makedirs(j(root, b"symlinks"))
    os.symlink(b"../sizes/one", j(root, b"symlinks", b"relative"))
    os.symlink(b"/etc/passwd", j(root, b"symlinks", b"absolute"))
    os.symlink(b"nowhere/at/all", j(root, b"symlinks", b"dangling"))
    os.symlink(b"../sizes", j(root, b"symlinks", b"to-dir"))
    os.symlink(b"t" * 1000, j(root, b"symlinks", b"long-target"))
    os.utime(j(root, b"symlinks", b"relative"), (1_000_000, 1_000_000), follow_symlinks=False)
    # Special files.
    os.makedirs(j(root, b"special"))
    os.mkfifo(j(root, b"special", b"fifo"))
    make_socket(j(root, b"special", b"socket"))
    if IS_ROOT:
        os.mknod(j(root, b"special", b"null"), 0o20666, os.makedev(1, 3))
        os.mknod(j(root, b"special", b"block"), 0o60640, os.makedev(7, 200))
        os.mknod(j(root, b"special", b"bigdev"), 0o20600, os.makedev(4095, 1048575))
    # Xattrs, empty values included, on files, directories and symlinks.
    os.makedirs(j(root, b"xattrs"))
    f = j(root, b"xattrs", b"file")
    write(f, b"xattr file\n")
    os.setxattr(f, b"user.mime", b"text/plain")
    os.setxattr(f, b"user.empty", b"")
    if IS_ROOT:
        os.setxattr(f, b"trusted.t", bytes(range(256)))
        os.setxattr(f, b"security.s", b"sec\x00value")
        os.setxattr(j(root, b"symlinks", b"dangling"), b"trusted.on-link", b"v", follow_symlinks=False)
        os.setxattr(j(root, b"special", b"fifo"), b"trusted.fifo", b"")
    os.setxattr(j(root, b"xattrs"), b"user.dir", b"on a directory")
    write(j(root, b"xattrs", b"same1"), b"1")
    write(j(root, b"xattrs", b"same2"), b"2")
    for name in (b"same1", b"same2"):
        os.setxattr(j(root, b"xattrs", name), b"user.shared", b"shared value")
    write(j(root, b"xattrs", b"big-sparse"), b"")
    with open(j(root, b"xattrs", b"big-sparse"), "r+b") as fh:
        fh.truncate(3 * BS)
    os.setxattr(j(root, b"xattrs", b"big-sparse"), b"user.x", b"y")
    # Owners above 65535, modes with setuid/setgid/sticky.
    os.makedirs(j(root, b"owners"))
    if IS_ROOT:
        for name, uid, gid in ((b"u100000", 100000, 100000), (b"u65536", 65536, 4000000000), (b"u1", 1, 2)):
            write(j(root, b"owners", name), name)
            os.lchown(j(root, b"owners", name), uid, gid)
        os.symlink(b"u1", j(root, b"owners", b"link-owned"))
        os.lchown(j(root, b"owners", b"link-owned"), 100001, 100002)
    write(j(root, b"owners", b"setuid"), b"s", 0o4755)
    write(j(root, b"owners", b"setgid"), b"s", 0o2711)
    write(j(root, b"owners", b"none"), b"s", 0o000)
    os.makedirs(j(root, b"owners", b"sticky"))
    os.chmod(j(root, b"owners", b"sticky"), 0o1777)
    # Modification times across the u32 range.
    os.makedirs(j(root, b"times"))
    for t in (0, 1, 1_700_000_000, 2**31 - 1, 2**31 + 5, 2**32 - 1):
        write(j(root, b"times", b"t%d" % t), b"t", mtime=t)
    os.makedirs(j(root, b"emptydir"))
    # Directory mtimes last: creating entries above changed them.
    for dirpath, _, _ in os.walk(root):
        os.utime(dirpath, (1_650_000_000, 1_650_000_000))


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
