"""Hand-made source trees that hit every edge of the format (one place, shared by the fs tests)."""

from __future__ import annotations

import os
import random

from tests.fs.conftest import BS, IS_ROOT, make_socket

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
