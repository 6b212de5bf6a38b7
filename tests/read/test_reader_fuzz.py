"""Damaged images: the reader, check_image and the mounted daemon end cleanly on every one of them.

Each run draws fresh mutations; the seed is in every failure message (set CONDAINER_FUZZ_SEED to
replay one).  benchmarks/fuzz_reader.py runs the same mutations for longer.
"""

from __future__ import annotations

import os
import random
import signal
import struct
import subprocess
import sys
import textwrap

import pytest

from condainer.errors import ImageError, MountError
from condainer.fs.check import check_image
from condainer.fs.reader import DamagedImage, SquashfsReader, walk
from tests.helpers.images import mksquashfs
from tests.helpers.mounts import IS_ROOT, fuse_usable, have, python_mount, unmount

pytestmark = pytest.mark.skipif(not have("mksquashfs"), reason="needs mksquashfs")

SEED = int(os.environ.get("CONDAINER_FUZZ_SEED") or random.SystemRandom().randrange(1 << 32))
IN_PROCESS = 250  # per base image; 4 base images
MOUNTED = 30
PER_IMAGE_SECONDS = 10


def build_small_tree(root: str) -> None:
    rng = random.Random(3)
    os.makedirs(os.path.join(root, "dir", "sub"))
    for n in (0, 1, 100, 5000, 131072, 131072 * 2 + 77):
        with open(os.path.join(root, f"f{n}"), "wb") as f:
            f.write(rng.randbytes(n // 2) + bytes(n - n // 2))
    for i in range(300):  # two directory headers
        with open(os.path.join(root, "dir", f"e{i:03d}"), "wb") as f:
            f.write(b"%d" % i)
    os.link(os.path.join(root, "f100"), os.path.join(root, "dir", "sub", "hard"))
    os.symlink("../f1", os.path.join(root, "dir", "link"))
    os.setxattr(os.path.join(root, "f5000"), "user.a", b"1")
    os.setxattr(os.path.join(root, "f5000"), "user.empty", b"")
    os.mkfifo(os.path.join(root, "fifo"))
    if IS_ROOT:
        os.mknod(os.path.join(root, "null"), 0o666 | 0o020000, os.makedev(1, 3))


VARIANTS = {
    "zstd": ("-comp", "zstd"),
    "gzip": ("-comp", "gzip"),
    "xz": ("-comp", "xz"),
    # raw metadata and data: mutations reach the structures instead of failing decompression
    "raw": ("-comp", "gzip", "-noI", "-noD", "-noF", "-noX"),
}


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz-base")
    src = str(d / "src")
    build_small_tree(src)
    out = {}
    for name, args in VARIANTS.items():
        img = str(d / f"{name}.sqfs")
        mksquashfs(src, img, args[1], *args[2:])
        with open(img, "rb") as f:
            out[name] = f.read()
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random kind of damage: bit flips (anywhere or in the tables at the end), overwritten or
    zeroed ranges, truncation, or a superblock field set to an extreme value."""
    buf = bytearray(data)
    used = struct.unpack_from("<Q", buf, 40)[0]
    kind = rng.randrange(7)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # the inode, directory, fragment, id and xattr tables sit at the end
        lo = struct.unpack_from("<Q", buf, 64)[0]
        lo = lo if lo < used else used // 2
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(lo, used)
            buf[i] ^= 1 << rng.randrange(8)
    elif kind == 2:
        i = rng.randrange(len(buf))
        n = rng.randint(1, 64)
        buf[i : i + n] = rng.randbytes(min(n, len(buf) - i))
    elif kind == 3:
        i = rng.randrange(len(buf))
        buf[i : i + rng.randint(1, 512)] = bytes(min(512, len(buf) - i))
        buf = buf[: len(data)]
    elif kind == 4:
        buf = buf[: rng.randrange(len(buf))]
    elif kind == 5:  # a superblock field
        fields = [
            (0, "<I"),
            (4, "<I"),
            (12, "<I"),
            (16, "<I"),
            (20, "<H"),
            (22, "<H"),
            (24, "<H"),
            (26, "<H"),
            (28, "<H"),
            (32, "<Q"),
            (40, "<Q"),
            (48, "<Q"),
            (56, "<Q"),
            (64, "<Q"),
            (72, "<Q"),
            (80, "<Q"),
            (88, "<Q"),
        ]
        off, fmt = rng.choice(fields)
        size = struct.calcsize(fmt)
        value = rng.choice(
            [
                0,
                1,
                2,
                3,
                7,
                255,
                (1 << (8 * size)) - 1,
                rng.randrange(1 << (8 * size)),
                struct.unpack_from(fmt, buf, off)[0] + rng.choice([-1, 1, 8192]),
            ]
        )
        struct.pack_into(fmt, buf, off, value % (1 << (8 * size)))
    else:  # a 16-bit field somewhere in the tables set to an extreme value
        lo = min(struct.unpack_from("<Q", buf, 64)[0], used - 2)
        i = rng.randrange(max(96, lo), used - 1)
        struct.pack_into("<H", buf, i, rng.choice([0, 0xFFFF, 0x8000, 0x7FFF, 256, 257]))
    return bytes(buf)


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def full_walk(path: str) -> int:
    """Everything a mount would serve, in-process; damage is allowed only as DamagedImage."""
    touched = 0
    try:
        reader = SquashfsReader(path)
    except ImageError:
        return 0
    with reader:
        reader.statfs()
        try:
            for _, node in walk(reader):
                touched += 1
                try:
                    reader.xattrs(node)
                    if node.is_reg:
                        for off in range(0, node.size, 1 << 20):
                            reader.read(node, off, 1 << 20)
                        reader.read(node, max(0, node.size - 5), 1000)
                    elif node.is_symlink:
                        reader.readlink(node)
                except DamagedImage:
                    pass
                if touched > 10_000:
                    raise AssertionError("walk did not end")
        except DamagedImage:
            pass
    return touched


def run_one(data: bytes, path: str, label: str) -> bool:
    """Check and walk one image under a time limit; True when check_image refused it."""
    with open(path, "wb") as f:
        f.write(data)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(PER_IMAGE_SECONDS)
    refused = False
    try:
        try:
            check_image(path)
        except ImageError as e:
            assert "\n" not in e.message
            refused = True
        full_walk(path)
    except Hang:
        pytest.fail(f"{label}: took more than {PER_IMAGE_SECONDS} s")
    except AssertionError:
        raise
    except Exception as e:  # anything but ImageError from the reader is the bug we look for
        raise AssertionError(f"{label}: {type(e).__name__}: {e}") from e
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return refused


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_mutated_images_in_process(variant, bases, tmp_path):
    rng = random.Random(f"{SEED}-{variant}")
    path = str(tmp_path / "m.sqfs")
    refused = 0
    for i in range(IN_PROCESS):
        data = mutate(bases[variant], rng)
        refused += run_one(data, path, f"seed {SEED} variant {variant} image {i}")
    # The mutations must hurt: a good share of the images is refused by the check.
    assert refused > IN_PROCESS // 4, refused


def test_good_images_pass_check(bases, tmp_path):
    for name, data in bases.items():
        p = tmp_path / f"{name}.sqfs"
        p.write_bytes(data)
        result = check_image(p)
        assert result.files == 306 and result.symlinks == 1 and result.entries == result.inodes
        assert full_walk(str(p)) > 300


def test_directory_loop_is_damage_not_a_hang(bases, tmp_path):
    data = bytearray(bases["raw"])
    with SquashfsReader_from_bytes(bytes(data), tmp_path / "orig.sqfs") as r:
        root_ref = r.root.ref
        dir_start = r.sb.directory_table_start
    # Point the entry "sub" (in /dir) at the root directory's inode.
    at = data.index(b"sub", dir_start)
    off, delta, typ, size = struct.unpack_from("<HhHH", data, at - 8)
    assert typ == 1 and size == 2
    struct.pack_into("<HhHH", data, at - 8, root_ref & 0xFFFF, delta, typ, size)
    p = tmp_path / "loop.sqfs"
    p.write_bytes(bytes(data))
    with SquashfsReader(p) as r:  # the patch took: /dir/sub is the root again
        assert r.resolve("/dir/sub").ref == root_ref
    with pytest.raises(ImageError, match="directory loop"):
        check_image(p)
    full_walk(str(p))
    if fuse_usable():
        mnt = str(tmp_path / "mnt")
        os.makedirs(mnt)
        with python_mount(str(p), mnt, log_path=str(tmp_path / "fuse.log")):
            proc = subprocess.run([sys.executable, "-c", MOUNT_WALK, mnt], capture_output=True, timeout=60)
            assert proc.returncode == 0, proc.stderr.decode()[-2000:]
            os.statvfs(mnt)  # the daemon survived the walk
        assert not os.path.ismount(mnt)


class SquashfsReader_from_bytes:  # noqa: N801 - a tiny context helper
    def __init__(self, data: bytes, path) -> None:
        path.write_bytes(data)
        self.reader = SquashfsReader(path)

    def __enter__(self):
        return self.reader

    def __exit__(self, *exc):
        self.reader.close()


MOUNT_WALK = textwrap.dedent("""
    import os, sys
    root = sys.argv[1]
    seen = set()
    stack = [root]
    n = 0
    while stack:
        d = stack.pop()
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            p = os.path.join(d, name)
            n += 1
            try:
                st = os.lstat(p)
                os.listxattr(p, follow_symlinks=False)
                if os.path.islink(p):
                    os.readlink(p)
                elif os.path.isdir(p):
                    if (st.st_ino, st.st_dev) not in seen:
                        seen.add((st.st_ino, st.st_dev))
                        stack.append(p)
                elif os.path.isfile(p):
                    with open(p, "rb") as f:
                        while f.read(1 << 20):
                            pass
            except OSError:
                pass
    os.statvfs(root)  # the daemon is still alive
    print(n)
""")


@pytest.mark.skipif(not fuse_usable(), reason="needs FUSE")
def test_mutated_images_mounted(bases, tmp_path):
    rng = random.Random(f"{SEED}-mounted")
    mnt = str(tmp_path / "mnt")
    os.makedirs(mnt)
    mounted = 0
    for i in range(MOUNTED):
        variant = rng.choice(list(VARIANTS))
        path = str(tmp_path / f"m{i}.sqfs")
        with open(path, "wb") as f:
            f.write(mutate(bases[variant], rng))
        label = f"seed {SEED} mounted image {i} ({variant})"
        try:
            with python_mount(path, mnt, log_path=str(tmp_path / "fuse.log")):
                mounted += 1
                proc = subprocess.run(
                    [sys.executable, "-c", MOUNT_WALK, mnt], capture_output=True, timeout=60
                )
                assert proc.returncode == 0, f"{label}: {proc.stderr.decode()[-2000:]}"
        except (ImageError, MountError) as e:
            assert "\n" not in e.message, label
        except subprocess.TimeoutExpired:
            pytest.fail(f"{label}: walk of the mount hung")
        finally:
            unmount(mnt)
        assert not os.path.ismount(mnt), label
    assert mounted > 0
