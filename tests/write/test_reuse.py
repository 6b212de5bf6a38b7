"""Re-packing against an old image (fs/writer/reuse.py): same bytes as a fresh pack, every reader
sees the new tree, and an old image that cannot serve changes nothing but the time."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess

import pytest

from condainer.fs.options import PackOptions
from condainer.fs.writer import pack_tree
from tests.helpers import snapshots
from tests.helpers.images import mksquashfs, unsquashfs
from tests.helpers.mounts import HAVE_FUSE, IS_ROOT, kernel_mount, python_mount, squashfuse_mount

EPOCH = "4000000000"  # after every file of the trees: nothing is clamped
BS = 128 * 1024


def _text(rng: random.Random, n: int) -> bytes:
    words = [b"alpha", b"beta", b"gamma", b"delta", b"import", b"numpy", b"def", b"return", b"%d" % rng.randint(0, 99)]
    return b" ".join(rng.choice(words) for _ in range(n // 5 + 1))[:n]


def _make_tree(root: str, seed: int = 3) -> None:
    """Directories of small files (fragments), files of several blocks with tails, an exact
    multiple of the block size, a sparse file, twins, empty files."""
    rng = random.Random(seed)
    for d in range(8):
        os.makedirs(f"{root}/pkg{d}/sub", exist_ok=True)
        for f in range(40):
            size = rng.choice([0, rng.randint(1, 3000), rng.randint(1, 12000)])
            with open(f"{root}/pkg{d}/f{f}.py", "wb") as fh:
                fh.write(_text(rng, size))
        for f in range(3):
            with open(f"{root}/pkg{d}/sub/lib{f}.so", "wb") as fh:
                fh.write(_text(rng, rng.randint(BS, 5 * BS)) + rng.randbytes(rng.randint(0, 3000)))
    with open(f"{root}/pkg0/exact.bin", "wb") as fh:
        fh.write(_text(rng, 2 * BS))
    with open(f"{root}/pkg1/sparse.bin", "wb") as fh:
        fh.write(b"head")
        fh.seek(4 * BS)
        fh.write(_text(rng, BS + 17))
    shutil.copy(f"{root}/pkg2/sub/lib0.so", f"{root}/pkg3/twin.so")


def _change(root: str) -> None:
    """What an install does to an environment: a package added, one removed, one changed; plus a
    file that keeps its size and name but not its content."""
    rng = random.Random(11)
    os.makedirs(f"{root}/pkg4/added", exist_ok=True)
    for f in range(25):
        with open(f"{root}/pkg4/added/n{f}.py", "wb") as fh:
            fh.write(_text(rng, rng.randint(1, 9000)))
    with open(f"{root}/pkg4/added/big.so", "wb") as fh:
        fh.write(rng.randbytes(3 * BS + 5))
    shutil.rmtree(f"{root}/pkg6")
    with open(f"{root}/pkg2/f3.py", "ab") as fh:
        fh.write(b"# upgraded\n")
    path = f"{root}/pkg5/sub/lib1.so"
    with open(path, "r+b") as fh:  # same size, same name, one byte different in its second block
        fh.seek(BS + 100)
        byte = fh.read(1)
        fh.seek(BS + 100)
        fh.write(bytes([byte[0] ^ 0xFF]))


def _copied(line: str) -> tuple[int, int]:
    """(files, blocks) of the line a re-pack prints."""
    found = re.match(r"reuse: copied (\d+) files' data \([^,]+, (\d+) blocks\)", line)
    assert found, line
    return int(found[1]), int(found[2])


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("reuse")
    old, new = str(base / "old"), str(base / "new")
    _make_tree(old)
    shutil.copytree(old, new, symlinks=True)
    _change(new)
    return base, old, new


def _pack(src, image, reuse=None, **kw) -> None:
    kw.setdefault("progress", False)
    pack_tree(src, image, PackOptions(**kw), reuse=reuse)


@pytest.fixture(autouse=True)
def _epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)


@pytest.mark.parametrize("level", [6, 15])
def test_repack_is_byte_identical_to_a_fresh_pack(trees, tmp_path, capsys, level):
    _, old, new = trees
    _pack(old, tmp_path / "old.sqfs", level=level, processors=2)
    _pack(new, tmp_path / "fresh.sqfs", level=level, processors=1)
    capsys.readouterr()
    _pack(new, tmp_path / "re.sqfs", reuse=tmp_path / "old.sqfs", level=level, processors=2)
    line = capsys.readouterr().err
    assert (tmp_path / "re.sqfs").read_bytes() == (tmp_path / "fresh.sqfs").read_bytes()
    assert line.startswith("reuse: copied ") and line.count("\n") == 1, line
    files, blocks = _copied(line)
    assert files > 100 and blocks > 50, line


def test_unchanged_tree_copies_every_block(trees, tmp_path, capsys):
    _, old, _ = trees
    _pack(old, tmp_path / "old.sqfs", processors=3)
    capsys.readouterr()
    _pack(old, tmp_path / "again.sqfs", reuse=tmp_path / "old.sqfs", processors=1)
    line = capsys.readouterr().err
    assert (tmp_path / "again.sqfs").read_bytes() == (tmp_path / "old.sqfs").read_bytes()
    assert re.search(r"about \d+\.\d s of compression saved", line), line  # measured even with nothing to compress
    files = sum(1 for d, _, names in os.walk(old) for n in names if os.path.getsize(os.path.join(d, n)))
    # every non-empty file but the twin (stored once) came from the old image
    assert f"copied {files - 1} files'" in line, line


def test_repack_into_the_old_path_while_it_is_mounted(trees, tmp_path, stack):
    """The old image is only read and replaced by a rename: a job reading it through a mount
    keeps reading the old tree, and the new file holds the new tree."""
    if not IS_ROOT:
        pytest.skip("loop mounts need root")
    _, old, new = trees
    image = tmp_path / "env.sqfs"
    _pack(old, image)
    before = image.read_bytes()
    mnt = stack.enter_context(kernel_mount(image))
    _pack(new, image, reuse=image)
    snapshots.assert_same(snapshots.snapshot(old, xattrs=False), snapshots.snapshot(mnt, xattrs=False))
    _pack(old, tmp_path / "check.sqfs")
    assert (tmp_path / "check.sqfs").read_bytes() == before  # the old file was never written to
    fresh = tmp_path / "fresh.sqfs"
    _pack(new, fresh)
    assert image.read_bytes() == fresh.read_bytes()


def _every_reader_sees(image, src, tmp_path, stack) -> None:
    expected = snapshots.snapshot(src, xattrs=False)
    snapshots.assert_same(expected, snapshots.snapshot(unsquashfs(image, tmp_path), xattrs=False), {"xattrs"})
    if IS_ROOT:
        snapshots.assert_same(expected, snapshots.snapshot(stack.enter_context(kernel_mount(image)), xattrs=False))
    if HAVE_FUSE:
        mnt = stack.enter_context(squashfuse_mount(image))
        snapshots.assert_same(expected, snapshots.snapshot(mnt, xattrs=False), {"xattrs"})
        mnt = stack.enter_context(python_mount(str(image)))
        snapshots.assert_same(expected, snapshots.snapshot(mnt, xattrs=False), {"xattrs"})


def test_old_image_by_mksquashfs(trees, tmp_path, stack, capsys):
    """mksquashfs compresses with the same zstd: its blocks of unchanged files are copied, and the
    new image reads as the new tree everywhere."""
    _, old, new = trees
    mksquashfs(old, str(tmp_path / "old.sqfs"), "zstd", "-Xcompression-level", "6", "-b", str(BS))
    capsys.readouterr()
    image = tmp_path / "re.sqfs"
    _pack(new, image, reuse=tmp_path / "old.sqfs", level=6)
    line = capsys.readouterr().err
    assert line.startswith("reuse: copied ") and _copied(line)[1] > 0, line
    _every_reader_sees(image, new, tmp_path, stack)


def test_byte_identical_repack_reads_as_the_new_tree(trees, tmp_path, stack):
    _, old, new = trees
    _pack(old, tmp_path / "old.sqfs")
    image = tmp_path / "re.sqfs"
    _pack(new, image, reuse=tmp_path / "old.sqfs")
    _every_reader_sees(image, new, tmp_path, stack)


def _damage(image, tmp_path, how: str):
    data = bytearray(image.read_bytes())
    bad = tmp_path / f"bad-{how}.sqfs"
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "foreign":
        data = bytearray(random.Random(1).randbytes(len(data)))
    elif how == "data":  # every data and fragment block's bytes changed, tables intact
        end = int.from_bytes(data[64:72], "little")  # inode_table_start
        rng = random.Random(2)
        for pos in range(200, end, 997):
            data[pos] ^= rng.randint(1, 255)
    elif how == "tables":  # the inode table scrambled
        start = int.from_bytes(data[64:72], "little")
        for pos in range(start + 2, start + 400):
            data[pos] ^= 0x5A
    elif how == "empty":
        data = bytearray()
    bad.write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize(
    "how", ["missing", "directory", "empty", "truncated", "foreign", "tables", "data", "fifo", "unrelated"]
)
def test_old_image_that_cannot_serve_gives_a_fresh_pack(trees, tmp_path, capsys, how):
    _, old, new = trees
    good = tmp_path / "old.sqfs"
    _pack(old, good)
    fresh = tmp_path / "fresh.sqfs"
    _pack(new, fresh)
    if how == "missing":
        bad = tmp_path / "nothing.sqfs"
    elif how == "directory":
        bad = tmp_path
    elif how == "fifo":
        bad = tmp_path / "fifo"
        os.mkfifo(bad)
    elif how == "unrelated":  # a sound image, same settings, of another tree: nothing matches
        _make_tree(str(tmp_path / "other"), seed=99)
        bad = tmp_path / "other.sqfs"
        _pack(str(tmp_path / "other"), bad)
    else:
        bad = _damage(good, tmp_path, how)
    capsys.readouterr()
    _pack(new, tmp_path / "re.sqfs", reuse=bad)
    err = capsys.readouterr().err
    assert (tmp_path / "re.sqfs").read_bytes() == fresh.read_bytes()
    assert err.count("\n") == 1 and err.startswith("reuse: "), err
    if how == "data":  # the tables check out: the blocks are looked at and refused one by one
        assert "did not read back" in err or _copied(err) == (0, 0), err
    elif how == "unrelated":  # only what both trees hold: sparse.bin's first block, "head" and zeros
        assert _copied(err) == (0, 1), err
    else:
        assert "packing without it" in err, err


@pytest.mark.parametrize(
    "old_settings",
    [dict(level=15), dict(compression="gzip"), dict(block_size=64 * 1024), dict(compression="lz4")],
)
def test_old_image_with_other_settings_is_not_used(trees, tmp_path, capsys, old_settings):
    _, old, new = trees
    _pack(old, tmp_path / "old.sqfs", **old_settings)
    _pack(new, tmp_path / "fresh.sqfs", level=6)
    capsys.readouterr()
    _pack(new, tmp_path / "re.sqfs", reuse=tmp_path / "old.sqfs", level=6)
    err = capsys.readouterr().err
    assert (tmp_path / "re.sqfs").read_bytes() == (tmp_path / "fresh.sqfs").read_bytes()
    assert err.count("\n") == 1 and "was packed with" in err and "packing without it" in err, err


def test_cli_pack_reuse(trees, tmp_path):
    from tests.helpers.cnd import cnd

    _, old, new = trees
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
    r = cnd("image", "pack", old, str(tmp_path / "old.sqfs"), "--backend", "python", env=env)
    assert r.returncode == 0, r.stderr
    r = cnd("image", "pack", "--reuse", str(tmp_path / "old.sqfs"), new, str(tmp_path / "re.sqfs"), env=env)
    assert r.returncode == 0, r.stderr
    assert "reuse: copied" in r.stderr and "(python backend)" in r.stderr, r.stderr
    r = cnd("image", "pack", new, str(tmp_path / "fresh.sqfs"), "--backend", "python", env=env)
    assert (tmp_path / "re.sqfs").read_bytes() == (tmp_path / "fresh.sqfs").read_bytes()
    r = cnd("image", "pack", "--reuse", str(tmp_path / "old.sqfs"), "--backend", "native", new,
            str(tmp_path / "n.sqfs"), env=env)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "--reuse needs the python backend" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "n.sqfs").exists()


def test_fresh_packs_stay_identical_across_processors(trees, tmp_path):
    _, _, new = trees
    for p in (1, 2, 3):
        _pack(new, tmp_path / f"p{p}.sqfs", processors=p)
    assert (tmp_path / "p1.sqfs").read_bytes() == (tmp_path / "p2.sqfs").read_bytes() == (tmp_path / "p3.sqfs").read_bytes()


def test_fragment_boundaries_follow_content():
    """A tail added early disturbs only the run of fragment blocks it lands in: every block after
    the next content-defined boundary is the same bytes as before."""
    from condainer.fs.writer import fragments
    from condainer.fs.writer.fragments import FragmentPacker

    class Collect:
        def __init__(self):
            self.blocks = []

        def add(self, block, target, index):
            self.blocks.append(block)

    rng = random.Random(7)
    tails = [_text(rng, rng.randint(1, 6000)) for _ in range(12000)]
    package = [_text(rng, rng.randint(1, 6000)) for _ in range(60)]  # about 180 KB of new files
    added = tails[:500] + package + tails[500:]

    def blocks(seq):
        sink = Collect()
        packer = FragmentPacker(sink, BS)
        for t in seq:
            packer.add(t)
        packer.flush()
        return sink.blocks

    before, after = blocks(tails), blocks(added)
    assert len(before) > 200 and all(len(b) <= BS for b in after)
    changed = len(set(before) - set(after))
    assert 1 <= changed <= 3 * fragments.RUN_BLOCKS, (changed, len(before))  # about one run
    # blocks filled to the brim shift after the new files, until by chance two breaks meet again
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fragments, "RUN_BLOCKS", 1 << 40)
        brim_before, brim_after = blocks(tails), blocks(added)
    assert len(set(brim_before) - set(brim_after)) > len(brim_before) // 2


@pytest.mark.skipif(not shutil.which("unsquashfs"), reason="needs unsquashfs")
def test_unsquashfs_lists_reused_image(trees, tmp_path):
    _, old, new = trees
    _pack(old, tmp_path / "old.sqfs")
    _pack(new, tmp_path / "re.sqfs", reuse=tmp_path / "old.sqfs")
    out = subprocess.run(["unsquashfs", "-l", str(tmp_path / "re.sqfs")], capture_output=True, text=True, check=True)
    assert "pkg4/added/big.so" in out.stdout and "pkg6" not in out.stdout


@pytest.mark.parametrize("seed", range(12))
def test_old_image_with_random_damage_never_gives_a_wrong_image(trees, tmp_path, capsys, seed):
    """Bytes changed anywhere in the old image (superblock, tables, blocks): the re-pack is still
    exactly the fresh image, with one line and no traceback."""
    _, old, new = trees
    good, fresh = tmp_path / "old.sqfs", tmp_path / "fresh.sqfs"
    _pack(old, good)
    _pack(new, fresh)
    data = bytearray(good.read_bytes())
    rng = random.Random(seed)
    end = int.from_bytes(data[40:48], "little")  # bytes_used
    # half the seeds hit the tables (and the superblock), the others anywhere
    low = int.from_bytes(data[64:72], "little") if seed % 2 else 0
    for _ in range(8):
        data[rng.randrange(low, end)] ^= rng.randint(1, 255)
    bad = tmp_path / "bad.sqfs"
    bad.write_bytes(bytes(data))
    capsys.readouterr()
    _pack(new, tmp_path / "re.sqfs", reuse=bad)
    err = capsys.readouterr().err
    assert (tmp_path / "re.sqfs").read_bytes() == fresh.read_bytes()
    assert err.count("\n") == 1 and err.startswith("reuse: "), err


def test_nothing_to_copy_without_compression(trees, tmp_path, capsys):
    _, old, new = trees
    _pack(old, tmp_path / "old.sqfs", compression="none")
    _pack(new, tmp_path / "fresh.sqfs", compression="none")
    capsys.readouterr()
    _pack(new, tmp_path / "re.sqfs", reuse=tmp_path / "old.sqfs", compression="none")
    err = capsys.readouterr().err
    assert (tmp_path / "re.sqfs").read_bytes() == (tmp_path / "fresh.sqfs").read_bytes()
    assert err == "reuse: nothing is compressed with --compression none: packing without it\n", err
