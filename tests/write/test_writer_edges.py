"""Trees users bring that the edge tree does not cover: limits of the format and odd sources.

Each case packs a source with the Python writer, reads it back through a kernel loop mount (and
unsquashfs where that is cheap) and compares it to the source. Where the format cannot store what
the source holds, packing must fail with one line through the CLI and leave nothing behind;
mksquashfs 4.5.1 is the reference for what is stored, and where it silently stores something else
the test says what we do instead. Trees and images are built once per module to stay fast.
"""

from __future__ import annotations

import contextlib
import filecmp
import hashlib
import os
import random
import shutil
import stat
import struct
import subprocess
import sys
import tempfile

import pytest

from tests.helpers import snapshots
from tests.helpers.cnd import cnd
from tests.helpers.images import pack, unsquashfs
from tests.helpers.mounts import HAVE_FUSE, IS_ROOT, kernel_mount, squashfuse_mount

HAVE_MKSQUASHFS = shutil.which("mksquashfs") is not None
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

needs_root = pytest.mark.skipif(not IS_ROOT, reason="loop mounts, chown and mknod need root")


def cli_pack(
    src, image, *args: str, env: dict | None = None, timeout: float = 120, backend: str = "python"
) -> subprocess.CompletedProcess:
    """``cnd image pack --backend BACKEND ... SRC IMAGE`` in a child, running this checkout's code."""
    environ = dict(os.environ if env is None else env)
    environ["PYTHONPATH"] = ROOT + os.pathsep + environ.get("PYTHONPATH", "")
    return cnd("image", "pack", "--backend", backend, *args, os.fspath(src), os.fspath(image), timeout=timeout,
               env=environ)


def assert_one_line_error(proc: subprocess.CompletedProcess, out_dir, *words: str) -> None:
    """Exit 1, a single ``cnd: error:`` line naming ``words``, and no image or temporary file left."""
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnd: error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert os.listdir(out_dir) == []


# --- uids and gids ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many_ids(tmp_path_factory):
    """65,535 distinct ids, the most a superblock can count (u16): root 0/0, file i 2i+1/2i+2."""
    if not IS_ROOT:
        pytest.skip("chown needs root")
    src = tmp_path_factory.mktemp("ids") / "src"
    src.mkdir()
    for i in range(32767):
        path = os.path.join(src, f"{i:05d}")
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        os.chown(path, 2 * i + 1, 2 * i + 2)
    os.chown(src, 0, 0)
    return src


@needs_root
def test_65535_distinct_ids_are_stored(many_ids, tmp_path, stack):
    image = tmp_path / "img.sqfs"
    pack(many_ids, image)
    mnt = stack.enter_context(kernel_mount(image))
    snapshots.assert_same(snapshots.snapshot(many_ids, xattrs=False), snapshots.snapshot(mnt, xattrs=False))


@needs_root
def test_65536_distinct_ids_are_a_one_line_error(many_ids, tmp_path):
    """mksquashfs 4.5.1 writes an id count of 0 here (u16 wrap): an image the kernel refuses to mount."""
    extra = os.path.join(many_ids, "one-more-id")
    os.close(os.open(extra, os.O_CREAT | os.O_WRONLY, 0o644))
    try:
        os.chown(extra, 65535, 65535)
        out = tmp_path / "out"
        out.mkdir()
        proc = cli_pack(many_ids, out / "img.sqfs")
        assert_one_line_error(proc, out, "65536 distinct uids and gids", "65535")
        assert cli_pack(many_ids, out / "img.sqfs", "--all-root").returncode == 0
    finally:
        os.unlink(extra)


# --- timestamps -------------------------------------------------------------------------------

U32_MAX = 2**32 - 1


@needs_root
def test_mtimes_at_both_ends_of_u32_are_stored(tmp_path, stack):
    src = tmp_path / "src"
    (src / "dir-at-0").mkdir(parents=True)
    for t in (0, 1, 2**31 - 1, 2**31, U32_MAX - 1, U32_MAX):
        path = src / f"t{t}"
        path.write_bytes(b"t")
        os.utime(path, (t, t))
    os.symlink("t0", src / "link-at-max")
    os.utime(src / "link-at-max", (U32_MAX, U32_MAX), follow_symlinks=False)
    os.utime(src / "dir-at-0", (0, 0))
    os.utime(src, (U32_MAX, U32_MAX))
    pack(src, tmp_path / "img.sqfs")
    expected = snapshots.snapshot(src)
    assert {r["mtime"] for r in expected.values()} == {0, 1, 2**31 - 1, 2**31, U32_MAX - 1, U32_MAX}
    mnt = stack.enter_context(kernel_mount(tmp_path / "img.sqfs"))
    snapshots.assert_same(expected, snapshots.snapshot(mnt))
    snapshots.assert_same(expected, snapshots.snapshot(unsquashfs(tmp_path / "img.sqfs", tmp_path)))
    assert snapshots.snapshot_image(tmp_path / "img.sqfs") == snapshots.snapshot(src, xattrs=False)


@pytest.mark.parametrize(
    "mtime,shown",
    [(-1, "1969-12-31 23:59:59 UTC"), (-315_619_200, "1960-01-01"), (2**32, "2106-02-07 06:28:16"),
     (7_258_118_400, "2200-01-01")],
)
def test_mtime_squashfs_cannot_store_is_a_one_line_error(tmp_path, mtime, shown):
    """mksquashfs 4.5.1 wraps these modulo 2^32 without a word (1969 becomes 2106, 2200 becomes 2063)."""
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    out.mkdir()
    (src / "sub" / "odd-time").write_bytes(b"x")
    os.utime(src / "sub" / "odd-time", (mtime, mtime))
    assert_one_line_error(cli_pack(src, out / "img.sqfs"), out, "sub/odd-time", shown, "1970-01-01 to 2106")


def test_error_naming_a_file_with_a_newline_in_its_name_stays_one_line(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    name = os.path.join(os.fsencode(src), b"two\nlines\xff")
    with open(name, "wb") as f:
        f.write(b"x")
    os.utime(name, (-1, -1))
    assert_one_line_error(cli_pack(src, out / "img.sqfs"), out, "two\\nlines\\xff", "1969")


def test_source_date_epoch_clamps_mtimes_after_2106_but_not_before_1970(tmp_path):
    from PySquashfsImage import SquashFsImage

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for name, t in (("y2200", 7_258_118_400), ("after-u32", 2**32 + 5), ("old", 1000)):
        (src / name).write_bytes(name.encode())
        os.utime(src / name, (t, t))
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    proc = cli_pack(src, out / "img.sqfs", env=env)
    assert proc.returncode == 0, proc.stderr
    with SquashFsImage.from_file(str(out / "img.sqfs")) as img:
        assert [img.select(f"/{n}").time for n in ("y2200", "after-u32", "old")] == [1700000000, 1700000000, 1000]
    os.unlink(out / "img.sqfs")
    os.utime(src / "old", (-5, -5))
    assert_one_line_error(cli_pack(src, out / "img.sqfs", env=env), out, "old", "1969-12-31 23:59:55")


# --- deep nesting, paths longer than PATH_MAX -------------------------------------------------


def fd_snapshot(root) -> dict[bytes, tuple]:
    """Like snapshots.snapshot, but walked through directory descriptors: paths may pass PATH_MAX."""
    result: dict[bytes, tuple] = {}

    def visit(dfd: int, rel: bytes) -> None:
        for name in sorted(os.fsencode(n) for n in os.listdir(dfd)):
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            path = rel + b"/" + name
            rec: tuple = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime))
            if stat.S_ISLNK(st.st_mode):
                rec += (os.readlink(name, dir_fd=dfd),)
            elif not stat.S_ISDIR(st.st_mode):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
                try:
                    xattrs = {n: os.getxattr(fd, n) for n in os.listxattr(fd) if n.startswith("user.")}
                    rec += (st.st_size, hashlib.sha256(os.read(fd, st.st_size + 1)).hexdigest(), xattrs)
                finally:
                    os.close(fd)
            result[path] = rec
            if stat.S_ISDIR(st.st_mode):
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
                try:
                    visit(fd, path)
                finally:
                    os.close(fd)

    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        visit(top, b"")
    finally:
        os.close(top)
    return result


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """200 nested directories (every 20th name 255 bytes long): the bottom path is over 5000 bytes."""
    base = tmp_path_factory.mktemp("deep")
    src = base / "src"
    src.mkdir()
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    length = len(os.fsencode(src))
    try:
        for level in range(200):
            name = f"level-{level:03d}-" + ("n" * 245 if level % 20 == 19 else "dir")
            length += 1 + len(name)
            os.mkdir(name, dir_fd=fd)
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
            if level in (100, 199):
                out = os.open(f"file-{level}", os.O_CREAT | os.O_WRONLY, 0o640, dir_fd=fd)
                try:
                    os.write(out, random.Random(level).randbytes(300_000 + level))  # blocks and a tail
                    os.setxattr(out, "user.depth", str(level).encode())
                finally:
                    os.close(out)
                os.symlink(f"file-{level}", f"link-{level}", dir_fd=fd)
    finally:
        os.close(fd)
    assert length > 5000
    image = base / "deep.sqfs"
    pack(src, image)
    return src, image, fd_snapshot(src)


@needs_root
def test_deep_tree_through_the_kernel(deep, stack):
    """unsquashfs 4.5.1 cannot extract paths longer than PATH_MAX (its own limit), so it is not asked."""
    src, image, expected = deep
    assert len(expected) == 200 + 4
    mnt = stack.enter_context(kernel_mount(image))
    assert fd_snapshot(mnt) == expected


@pytest.mark.skipif(not HAVE_FUSE, reason="squashfuse_ll or /dev/fuse missing")
def test_deep_tree_through_squashfuse(deep, stack):
    src, image, expected = deep
    mnt = stack.enter_context(squashfuse_mount(image))
    assert fd_snapshot(mnt) == expected


# --- a sparse file larger than 4 GiB ----------------------------------------------------------

HUGE = 5 * 2**30 + 4321  # not a whole number of blocks: the tail goes to a fragment
HUGE_DATA = [(0, 3 << 20), (HUGE // 2 + 12345, 3 << 20), (HUGE - (2 << 20) - 7, (2 << 20) + 7)]


def make_sparse(path, seed: int) -> None:
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        for offset, length in HUGE_DATA:
            f.seek(offset)
            f.write(rnd.randbytes(length))
    assert os.stat(path).st_size == HUGE


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    """Two identical 5 GiB sparse files (8 MiB of data each), packed while counting the bytes read."""
    from condainer.fs.writer import data

    base = tmp_path_factory.mktemp("huge")
    src = base / "src"
    src.mkdir()
    make_sparse(src / "huge", 7)
    make_sparse(src / "huge-twin", 7)
    # The same 16 MiB written out and with holes (one copy stored), and one byte apart (two copies).
    ends = random.Random(8).randbytes(2 << 20)
    (src / "zeros").write_bytes(ends[: 1 << 20] + bytes(14 << 20) + ends[1 << 20 :])
    for name, last in (("holes", ends[-1:]), ("holes-differ", b"!")):
        with open(src / name, "wb") as f:
            f.write(ends[: 1 << 20])
            f.seek(15 << 20)
            f.write(ends[1 << 20 : -1] + last)
    read = []

    def counting(real):
        def call(*args):
            chunk = real(*args)
            read.append(len(chunk))
            return chunk

        return call

    with pytest.MonkeyPatch.context() as mp:
        for name in ("read", "pread"):
            mp.setattr(data.os, name, counting(getattr(os, name)))
        pack(src, base / "huge.sqfs")
    return src, base / "huge.sqfs", sum(read)


def windows() -> list[tuple[int, int]]:
    """(offset, length) ranges to compare: every data range and its edges, holes, block edges, the end."""
    bs = 128 * 1024
    spots = [0, bs - 5, 2**32 - 3, 2**32 + bs, HUGE // 4, HUGE - 1, HUGE - bs - 100]
    for offset, length in HUGE_DATA:
        spots += [offset - 4096, offset + length - 4096, offset + length // 2]
    return [(max(0, s), 1 << 16) for s in spots]


def assert_same_content(expected_path, actual_path) -> None:
    assert os.stat(actual_path).st_size == HUGE
    with open(expected_path, "rb") as exp, open(actual_path, "rb") as act:
        for offset, length in windows():
            assert os.pread(act.fileno(), length, offset) == os.pread(exp.fileno(), length, offset), offset
        hole = os.pread(act.fileno(), 1 << 20, 3 * 2**30)
        assert hole == bytes(1 << 20)


def test_sparse_holes_are_not_read(huge):
    """Holes are zeros without reading them: of 10 GiB of holes and 36 MiB of data (written zeros
    included), about 50 MiB are read, some data twice (hashed for dedup, then stored)."""
    assert huge[2] < 64 << 20


def test_sparse_file_over_4_gib_is_an_extended_inode_stored_once(huge):
    from PySquashfsImage import SquashFsImage

    _, image, _ = huge
    assert os.path.getsize(image) < 14 << 20  # 8 + 2 + 2 MiB of random data; twins share theirs
    with SquashFsImage.from_file(str(image)) as img:
        for name in ("huge", "huge-twin"):
            inode = img.select(f"/{name}").inode
            assert (inode.type, inode.file_size) == (9, HUGE)  # extended file, 64-bit size
        start = {name: img.select(f"/{name}").inode.start for name in ("huge", "huge-twin", "zeros", "holes")}
        assert start["huge"] == start["huge-twin"] and start["zeros"] == start["holes"]  # one copy each
        assert img.select("/holes-differ").inode.start != start["holes"]


@needs_root
def test_sparse_file_over_4_gib_through_the_kernel(huge, stack):
    src, image, _ = huge
    mnt = stack.enter_context(kernel_mount(image))
    for name in ("huge", "huge-twin"):
        assert_same_content(src / name, os.path.join(mnt, name))
    assert os.stat(os.path.join(mnt, "huge")).st_blocks * 512 < 64 << 20
    for name in ("zeros", "holes", "holes-differ"):
        assert filecmp.cmp(src / name, os.path.join(mnt, name), shallow=False), name


def test_sparse_file_over_4_gib_through_unsquashfs(huge, tmp_path):
    src, image, _ = huge
    out = unsquashfs(image, tmp_path)
    for name in ("huge", "huge-twin"):
        assert_same_content(src / name, os.path.join(out, name))


# --- special sources --------------------------------------------------------------------------

SWAP_SCRIPT = """
import os, sys
from condainer.errors import CondainerError
from condainer.fs.writer import pack as writer, scan
from condainer.fs.options import PackOptions
src, image, victim = sys.argv[1:]
real_list = scan.Scanner.list

def list_then_swap(self, directory):
    subdirs = real_list(self, directory)
    if directory == 0:  # the root, where the victim is, has just been listed
        os.unlink(victim)
        os.mkfifo(victim)  # nobody ever writes to it: opening it for reading would wait forever
    return subdirs

scan.Scanner.list = list_then_swap
try:
    writer.pack_tree(src, image, PackOptions(progress=False, processors=1))
except CondainerError as exc:
    print(f"cnd: error: {exc.message}", file=sys.stderr)
    sys.exit(exc.exit_code)
"""


def test_file_that_became_a_fifo_after_the_scan_is_an_error_not_a_hang(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "a").write_bytes(b"a" * 1000)
    (src / "victim").write_bytes(b"v" * 1000)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", SWAP_SCRIPT, str(src), str(out / "img.sqfs"), str(src / "victim")],
        capture_output=True, text=True, timeout=20, env=env,
    )
    assert_one_line_error(proc, out, "victim", "not a regular file")


@needs_root
@pytest.mark.parametrize(
    "backend",
    ["python", pytest.param("native", marks=pytest.mark.skipif(not HAVE_MKSQUASHFS, reason="no mksquashfs"))],
)
def test_source_that_is_a_symlink_to_a_directory_packs_the_directory(tmp_path, stack, backend):
    """Both backends pack what the link points to (mksquashfs itself would store just the link)."""
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "sub" / "file").write_bytes(b"content\n")
    os.symlink("sub/file", real / "rel-link")
    os.chmod(real, 0o750)
    os.symlink(real, tmp_path / "via-link")
    out = tmp_path / "out"
    out.mkdir()
    proc = cli_pack(tmp_path / "via-link", out / "img.sqfs", backend=backend)
    assert proc.returncode == 0, proc.stderr
    mnt = stack.enter_context(kernel_mount(out / "img.sqfs"))
    snapshots.assert_same(snapshots.snapshot(real), snapshots.snapshot(mnt))


@needs_root
def test_fifo_in_the_source_is_stored_not_opened(tmp_path, stack):
    """Opening a FIFO for reading waits for a writer: the pack must only lstat it."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    os.mkfifo(src / "fifo", 0o640)
    (src / "file").write_bytes(b"x" * 300_000)
    os.link(src / "fifo", src / "fifo-link")
    proc = cli_pack(src, out / "img.sqfs", timeout=30)
    assert proc.returncode == 0, proc.stderr
    mnt = stack.enter_context(kernel_mount(out / "img.sqfs"))
    snapshots.assert_same(snapshots.snapshot(src), snapshots.snapshot(mnt))
    assert os.lstat(os.path.join(mnt, "fifo")).st_nlink == 2


def listed_with_dots(path) -> list[str]:
    """What ls -a shows: glibc's readdir, which skips entries whose inode number is 0."""
    return subprocess.run(["ls", "-a", path], capture_output=True, text=True, check=True).stdout.split()


@needs_root
@pytest.mark.parametrize("mode", [0o755, 0o700, 0o1777])
def test_empty_directory_as_the_whole_source(tmp_path, stack, mode):
    src = tmp_path / "src"
    src.mkdir()
    os.chmod(src, mode)
    os.utime(src, (123456, 123456))
    pack(src, tmp_path / "img.sqfs")
    expected = snapshots.snapshot(src)
    mnt = stack.enter_context(kernel_mount(tmp_path / "img.sqfs"))
    snapshots.assert_same(expected, snapshots.snapshot(mnt))
    assert os.listdir(mnt) == []
    assert listed_with_dots(mnt) == [".", ".."]
    snapshots.assert_same(expected, snapshots.snapshot(unsquashfs(tmp_path / "img.sqfs", tmp_path)))
    assert snapshots.snapshot_image(tmp_path / "img.sqfs") == snapshots.snapshot(src, xattrs=False)


# --- block sizes: files of whole blocks -------------------------------------------------------


def whole_block_tree(root, bs: int) -> None:
    """Files of exactly 1, 3 and 9 blocks (9 is past the read-at-once size), zero and sparse blocks."""
    rnd = random.Random(bs)
    root.mkdir()
    (root / "one-block").write_bytes(rnd.randbytes(bs))
    (root / "three-blocks").write_bytes(rnd.randbytes(3 * bs))
    (root / "nine-blocks").write_bytes(rnd.randbytes(9 * bs))
    (root / "zero-blocks").write_bytes(bytes(2 * bs))
    (root / "data-zero-data").write_bytes(rnd.randbytes(bs) + bytes(bs) + rnd.randbytes(bs))
    with open(root / "nine-with-holes", "wb") as f:
        f.write(rnd.randbytes(bs))
        f.seek(5 * bs)
        f.write(rnd.randbytes(bs))
        f.truncate(9 * bs)
    (root / "bs-minus-1").write_bytes(rnd.randbytes(bs - 1))
    (root / "bs-plus-1").write_bytes(rnd.randbytes(bs + 1))


@needs_root
@pytest.mark.parametrize("size", ["4K", "64K", "1M"])
def test_files_of_whole_blocks_at_each_block_size(tmp_path, stack, size):
    from PySquashfsImage import SquashFsImage

    bs = {"4K": 4096, "64K": 65536, "1M": 1 << 20}[size]
    src, out = tmp_path / "src", tmp_path / "out"
    whole_block_tree(src, bs)
    out.mkdir()
    proc = cli_pack(src, out / "img.sqfs", "--block-size", size)
    assert proc.returncode == 0, proc.stderr
    with SquashFsImage.from_file(str(out / "img.sqfs")) as img:
        assert img.sblk.block_size == bs
        for name, blocks in (("one-block", 1), ("three-blocks", 3), ("nine-blocks", 9), ("zero-blocks", 2)):
            inode = img.select(f"/{name}").inode
            assert (inode.blocks, inode.fragment) == (blocks, 0xFFFFFFFF), name  # no empty tail fragment
    expected = snapshots.snapshot(src)
    mnt = stack.enter_context(kernel_mount(out / "img.sqfs"))
    snapshots.assert_same(expected, snapshots.snapshot(mnt))
    snapshots.assert_same(expected, snapshots.snapshot(unsquashfs(out / "img.sqfs", tmp_path)))
    assert snapshots.snapshot_image(out / "img.sqfs") == snapshots.snapshot(src, xattrs=False)
    # st_blocks as mksquashfs reports them: zero blocks count as sparse only if the source had holes.
    blocks = {name: os.stat(os.path.join(mnt, name)).st_blocks for name in os.listdir(mnt)}
    assert blocks["zero-blocks"] == os.stat(src / "zero-blocks").st_blocks
    assert blocks["nine-with-holes"] * 512 <= 3 * bs
    if HAVE_MKSQUASHFS:
        reference = out / "mksquashfs.sqfs"
        subprocess.run(["mksquashfs", src, reference, "-b", str(bs), "-quiet", "-no-progress"], check=True)
        mnt_mk = stack.enter_context(kernel_mount(reference))
        assert {name: os.stat(os.path.join(mnt_mk, name)).st_blocks for name in os.listdir(mnt_mk)} == blocks
        snapshots.assert_same(expected, snapshots.snapshot(mnt_mk))


# --- one tree: a huge directory, name order, hard links, owners, modes ------------------------

# Names that differ only in their last byte, and bytes above 0x7f (which sort as unsigned bytes).
SORT_NAMES = [
    b"A", b"a", b"ab", b"ab\x01", b"ab\x7f", b"ab\x80", b"ab\xff", b"abc", b"a~", b"a\xc3\xa9",
    b"z", b"\x7f", b"\x80", b"\xc3\xa9t\xc3\xa9", b"\xfe", b"\xff", b"\xff\xff", b"a" * 255,
    b"a" * 254 + b"b", b"a" * 254 + b"\xff", b"e10000", b"e10000-", b"e10000\x80",
]
ABSENT = [b"ab\x02", b"ab\x81", b"\xfd", b"e10000-x", b"a" * 254 + b"c", b"e1000", b"zz", b"x\xfe"]
OWNERS = {"root": (0, 0), "u65535": (65535, 65535), "u2-31": (2**31, 2**31), "u2-32-2": (2**32 - 2, 2**32 - 2),
          "mixed": (2**32 - 2, 0)}
MODES = [0o4755, 0o2755, 0o1755, 0o7777, 0o6000, 0o0000, 0o0777, 0o0644]


def build_edges(root) -> None:
    j = os.path.join
    big = j(root, b"big")
    os.makedirs(big)
    for i in range(20_000):
        os.close(os.open(j(big, b"e%05d-%s" % (i, b"n" * (i % 50))), os.O_CREAT | os.O_WRONLY, 0o644))
    for name in SORT_NAMES:
        with open(j(big, name), "wb") as f:
            f.write(name)
    # 1000 names for one file across two directories; links to a symlink, a fifo and a device.
    links = j(root, b"links")
    os.makedirs(j(links, b"sub"))
    with open(j(links, b"orig"), "wb") as f:
        f.write(b"linked 1000 times\n")
    for i in range(999):
        os.link(j(links, b"orig"), j(links, b"sub" if i % 2 else b"", b"l%04d" % i))
    os.symlink(b"orig", j(links, b"sym"))
    os.link(j(links, b"sym"), j(links, b"sym-link"), follow_symlinks=False)
    os.mkfifo(j(links, b"fifo"))
    os.link(j(links, b"fifo"), j(links, b"sub", b"fifo-link"))
    os.mknod(j(links, b"dev"), 0o20640 | stat.S_IFCHR, os.makedev(10, 200))
    os.link(j(links, b"dev"), j(links, b"sub", b"dev-link"))
    os.mknod(j(links, b"blk"), 0o600 | stat.S_IFBLK, os.makedev(259, 70000))
    os.link(j(links, b"blk"), j(links, b"blk-link"))
    # Owners at the edges of the id range, on files, a symlink and a directory.
    owners = j(root, b"owners")
    os.makedirs(j(owners, b"dir"))
    for name, (uid, gid) in OWNERS.items():
        path = j(owners, name.encode())
        with open(path, "wb") as f:
            f.write(name.encode())
        os.chown(path, uid, gid)
    os.symlink(b"root", j(owners, b"symlink"))
    os.lchown(j(owners, b"symlink"), 2**31 + 7, 65535)
    os.chown(j(owners, b"dir"), 65535, 2**31)
    # setuid, setgid, sticky, none and all on files and directories; a symlink is always 0777.
    modes = j(root, b"modes")
    os.makedirs(modes)
    for mode in MODES:
        with open(j(modes, b"f%04o" % mode), "wb") as f:
            f.write(b"m")
        os.chmod(j(modes, b"f%04o" % mode), mode)
        os.makedirs(j(modes, b"d%04o" % mode))
        os.chmod(j(modes, b"d%04o" % mode), mode)
    os.symlink(b"f0000", j(modes, b"symlink"))
    for path in (big, links, j(links, b"sub"), owners, modes, root):
        os.utime(path, (1_600_000_000, 1_600_000_000))


@pytest.fixture(scope="module")
def edges(tmp_path_factory):
    if not IS_ROOT:
        pytest.skip("chown and mknod need root")
    base = tmp_path_factory.mktemp("edges")
    src = os.path.join(os.fsencode(base), b"src")
    build_edges(src)
    image = base / "edges.sqfs"
    pack(src, image, processors=2)
    return src, image, snapshots.snapshot(src)


@needs_root
def test_edges_through_the_kernel(edges, stack):
    src, image, expected = edges
    assert len(expected) > 21_000
    mnt = os.fsencode(stack.enter_context(kernel_mount(image)))
    snapshots.assert_same(expected, snapshots.snapshot(mnt))  # every name looked up, not only listed
    big = os.path.join(mnt, b"big")
    assert os.listdir(big) == sorted(os.listdir(os.path.join(src, b"big")))  # unsigned byte order
    for name in ABSENT:
        assert not os.path.lexists(os.path.join(big, name)), name
    assert listed_with_dots(mnt) == [".", "..", "big", "links", "modes", "owners"]


@needs_root
def test_edges_link_counts_and_inode_numbers(edges, stack):
    src, image, _ = edges
    mnt = os.fsencode(stack.enter_context(kernel_mount(image)))

    def st(rel: bytes) -> os.stat_result:
        return os.lstat(os.path.join(mnt, b"links", rel))

    group = [st(b"orig")] + [st((b"sub/" if i % 2 else b"") + b"l%04d" % i) for i in range(999)]
    assert {s.st_ino for s in group} == {group[0].st_ino} and group[0].st_nlink == 1000
    pairs = [(b"sym", b"sym-link"), (b"fifo", b"sub/fifo-link"), (b"dev", b"sub/dev-link"), (b"blk", b"blk-link")]
    numbers = {group[0].st_ino}
    for first, second in pairs:
        a, b = st(first), st(second)
        assert a.st_ino == b.st_ino and a.st_nlink == b.st_nlink == 2, first
        numbers.add(a.st_ino)
    assert len(numbers) == 5
    assert stat.S_ISLNK(st(b"sym-link").st_mode) and os.readlink(os.path.join(mnt, b"links/sym-link")) == b"orig"
    assert (os.major(st(b"sub/dev-link").st_rdev), os.minor(st(b"sub/dev-link").st_rdev)) == (10, 200)
    assert (os.major(st(b"blk").st_rdev), os.minor(st(b"blk").st_rdev)) == (259, 70000)


@pytest.mark.skipif(not HAVE_FUSE, reason="squashfuse_ll or /dev/fuse missing")
def test_edges_through_squashfuse(edges, stack):
    src, image, expected = edges
    mnt = stack.enter_context(squashfuse_mount(image))
    snapshots.assert_same(expected, snapshots.snapshot(mnt, xattrs=False), {"xattrs"})


@needs_root
def test_edges_through_unsquashfs(edges, tmp_path):
    src, image, expected = edges
    snapshots.assert_same(expected, snapshots.snapshot(unsquashfs(image, tmp_path)))


@needs_root
@pytest.mark.skipif(not HAVE_MKSQUASHFS, reason="no mksquashfs")
def test_edges_as_mksquashfs_stores_them(edges, tmp_path, stack):
    """mksquashfs 4.5.1 packs the same tree to the same view through the kernel, st_nlink included."""
    src, image, expected = edges
    reference = tmp_path / "mksquashfs.sqfs"
    subprocess.run(["mksquashfs", src, reference, "-quiet", "-no-progress", "-processors", "2"], check=True)
    ours = os.fsencode(stack.enter_context(kernel_mount(image)))
    theirs = os.fsencode(stack.enter_context(kernel_mount(reference)))
    snapshots.assert_same(snapshots.snapshot(theirs), snapshots.snapshot(ours))
    for rel in (b"links/orig", b"links/sym", b"links/sub", b"big", b"modes/d0000", b"."):
        assert os.lstat(os.path.join(ours, rel)).st_nlink == os.lstat(os.path.join(theirs, rel)).st_nlink, rel


# --- xattrs -----------------------------------------------------------------------------------


def posix_acl(*entries: tuple[int, int, int]) -> bytes:
    """A system.posix_acl_* value: version 2, then (tag, permissions, id) per entry."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


ACL = posix_acl((0x01, 6, 2**32 - 1), (0x02, 4, 1000), (0x04, 4, 2**32 - 1), (0x10, 4, 2**32 - 1), (0x20, 0, 2**32 - 1))


@pytest.fixture(scope="module")
def xattr_tree(tmp_path_factory):
    """On tmpfs, which takes 64 KiB values (ext4 keeps all of a file's xattrs in one 4 KiB block)."""
    if not IS_ROOT:
        pytest.skip("mounting tmpfs and trusted.* need root")
    base = tmp_path_factory.mktemp("xattrs")
    with contextlib.ExitStack() as cleanup:
        fs = tempfile.mkdtemp(prefix="xattr-tmpfs-")
        cleanup.callback(os.rmdir, fs)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", fs], check=True)
        cleanup.callback(subprocess.run, ["umount", "-l", fs], check=False)
        src = os.path.join(fs, "src")
        os.makedirs(os.path.join(src, "shared"))
        many = os.path.join(src, "many")
        open(many, "wb").close()
        for i in range(300):
            os.setxattr(many, f"user.attr{i:03d}", b"value %d " % i * (i % 7))
        big = os.path.join(src, "big-values")
        open(big, "wb").close()
        os.setxattr(big, "user.big", bytes(range(256)) * 234)  # 59,904 bytes: spans 8 metadata blocks
        os.setxattr(big, "trusted.largest", b"t" * 65536)  # the most the VFS passes
        os.setxattr(big, "user.empty", b"")
        empties = os.path.join(src, "empties")
        open(empties, "wb").close()
        for name in ("user.e1", "user.e2", "trusted.e", "security.e"):
            os.setxattr(empties, name, b"")
        sec = os.path.join(src, "security-and-trusted")
        with open(sec, "wb") as f:
            f.write(b"s")
        os.setxattr(sec, "security.selinux", b"system_u:object_r:bin_t:s0\0")
        os.setxattr(sec, "security.capability", struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0))
        os.setxattr(sec, "trusted.overlay.opaque", b"y")
        os.symlink("many", os.path.join(src, "symlink"))
        os.setxattr(os.path.join(src, "symlink"), "trusted.on-link", b"v", follow_symlinks=False)
        for i in range(2000):  # three distinct sets among 2000 files: three xattr ids
            path = os.path.join(src, "shared", f"f{i:04d}")
            with open(path, "wb") as f:
                f.write(b"%d" % i)
            os.setxattr(path, "user.a", b"same")
            os.setxattr(path, "user.b", b"set %d" % (i % 3))
        acl = os.path.join(src, "acl")
        with open(acl, "wb") as f:
            f.write(b"acl")
        os.setxattr(acl, "system.posix_acl_access", ACL)
        os.setxattr(acl, "user.kept", b"k")
        os.makedirs(os.path.join(src, "acl-dir"))
        os.setxattr(os.path.join(src, "acl-dir"), "system.posix_acl_default", ACL)
        out = base / "out"
        out.mkdir()
        proc = cli_pack(src, out / "xattrs.sqfs")
        assert proc.returncode == 0, proc.stderr
        expected = snapshots.snapshot(src)
        yield src, out / "xattrs.sqfs", expected, proc.stderr


@needs_root
def test_xattrs_through_the_kernel(xattr_tree, stack):
    src, image, expected, _ = xattr_tree
    assert len(expected[b"many"]["xattrs"]) == 300 and len(expected[b"big-values"]["xattrs"][b"trusted.largest"]) == 65536
    mnt = stack.enter_context(kernel_mount(image))
    snapshots.assert_same(expected, snapshots.snapshot(mnt))


@needs_root
def test_xattrs_through_unsquashfs(xattr_tree):
    """Extracted onto the same tmpfs: ext4 could not take the 64 KiB value back."""
    src, image, expected, _ = xattr_tree
    out = tempfile.mkdtemp(dir=os.path.dirname(src))
    try:
        snapshots.assert_same(expected, snapshots.snapshot(unsquashfs(image, out)))
    finally:
        shutil.rmtree(out)


@needs_root
def test_xattr_tree_through_pysquashfsimage(xattr_tree):
    """PySquashfsImage applies xattrs only when extracting: the rest of the tree is compared."""
    src, image, _, _ = xattr_tree
    snapshots.assert_same(snapshots.snapshot(src, xattrs=False), snapshots.snapshot_image(image))


@needs_root
def test_shared_xattr_sets_are_stored_once(xattr_tree):
    src, image, _, _ = xattr_tree
    with open(image, "rb") as f:
        (table,) = struct.unpack("<Q", os.pread(f.fileno(), 8, 56))  # superblock: xattr id table
        _, count, _ = struct.unpack("<QII", os.pread(f.fileno(), 16, table))
    # many, big-values, empties, security-and-trusted, symlink, acl (user.kept) and 3 shared sets
    assert count == 9


@needs_root
def test_posix_acls_are_left_out_and_named(xattr_tree, stack):
    """squashfs has no system.* namespace: ACLs are dropped (the mode keeps the mask), with a note."""
    src, image, _, stderr = xattr_tree
    assert "system.posix_acl_access" in stderr and "system.posix_acl_default" in stderr
    mnt = stack.enter_context(kernel_mount(image))
    assert os.listxattr(os.path.join(mnt, "acl")) == ["user.kept"]
    assert os.listxattr(os.path.join(mnt, "acl-dir")) == []
    assert os.stat(os.path.join(mnt, "acl")).st_mode == os.stat(os.path.join(src, "acl")).st_mode


@needs_root
@pytest.mark.skipif(not HAVE_MKSQUASHFS, reason="no mksquashfs")
def test_xattrs_as_mksquashfs_stores_them(xattr_tree, tmp_path, stack):
    """The same xattrs (ACLs dropped too) and the same st_blocks, which count the xattrs' size."""
    src, image, _, _ = xattr_tree
    reference = tmp_path / "mksquashfs.sqfs"
    subprocess.run(["mksquashfs", src, reference, "-quiet", "-no-progress"], check=True, capture_output=True)
    ours = stack.enter_context(kernel_mount(image))
    theirs = stack.enter_context(kernel_mount(reference))
    snapshots.assert_same(snapshots.snapshot(theirs), snapshots.snapshot(ours))
    for name in ("acl", "acl-dir"):
        assert os.listxattr(os.path.join(theirs, name)) == os.listxattr(os.path.join(ours, name))
    for name in ("many", "big-values", "empties", "security-and-trusted", "symlink", "acl", "shared/f0001"):
        assert os.lstat(os.path.join(ours, name)).st_blocks == os.lstat(os.path.join(theirs, name)).st_blocks, name
