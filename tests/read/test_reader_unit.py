"""The reader in-process: lazy open, ranged reads against the source files, lz4, info."""

from __future__ import annotations

import hashlib
import os
import random

import pytest

from condainer.errors import ImageError
from condainer.fs.check import check_image
from condainer.fs.info import image_info
from condainer.fs.reader import SquashfsReader, walk
from tests.helpers.images import mksquashfs
from tests.helpers.mounts import have

pytestmark = pytest.mark.skipif(not have("mksquashfs"), reason="needs mksquashfs")


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """20,000 files in 200 directories."""
    d = tmp_path_factory.mktemp("wide")
    src = d / "src"
    for i in range(200):
        sub = src / f"d{i:03d}"
        sub.mkdir(parents=True)
        for k in range(100):
            (sub / f"f{k:03d}").write_bytes(b"%d/%d\n" % (i, k))
    return src, mksquashfs(str(src), str(d / "wide.sqfs"), "zstd")


def test_open_reads_no_directory(wide):
    _, img = wide
    with SquashfsReader(img) as r:
        # superblock, id table, fragment index, root inode: a handful of metadata blocks
        assert r.cache_stats()["meta_misses"] <= 6
        assert len(r._dirs) == 0
        node = r.resolve("/d123/f045")
        assert r.read(node, 0, 100) == b"123/45\n"
        assert len(r._dirs) == 2  # the root and /d123, nothing else


def test_walk_and_info_count_everything(wide):
    _, img = wide
    with SquashfsReader(img) as r:
        paths = [p for p, _ in walk(r)]
    assert len(paths) == 20_200
    info = image_info(img)
    assert info["files"] == 20_000 and info["directories"] == 201 and info["compression"] == "zstd"
    assert info["block_size"] == 128 * 1024 and info["inodes"] == 20_201
    result = check_image(img)
    assert result.files == 20_000 and result.directories == 201


@pytest.mark.parametrize("comp", ["zstd", "gzip", "xz", "lz4"])
def test_ranged_reads_match_source(comp, tmp_path):
    if comp == "lz4":
        pytest.importorskip("lz4.block")
    rng = random.Random(5)
    src = tmp_path / "src"
    src.mkdir()
    blobs = {}
    for n in (0, 1, 4096, 131071, 131072, 131073, 700_000):
        data = rng.randbytes(n // 2) + b"z" * (n - n // 2)
        (src / f"f{n}").write_bytes(data)
        blobs[f"/f{n}"] = data
    img = mksquashfs(str(src), str(tmp_path / "i.sqfs"), comp)
    with SquashfsReader(img) as r:
        for path, data in blobs.items():
            node = r.resolve(path)
            assert node.size == len(data)
            assert r.read(node, 0, len(data) + 10) == data
            for _ in range(40):
                off = rng.randrange(0, len(data) + 3)
                n = rng.choice([1, 100, 131072, 300000])
                assert r.read(node, off, n) == data[off : off + n]
        assert r.resolve("/missing") is None and r.resolve("/f1/below") is None
    assert hashlib.sha256(b"".join(blobs.values())).digest()


def test_not_an_image(tmp_path):
    p = tmp_path / "x.sqfs"
    p.write_bytes(b"\0" * 4096)
    with pytest.raises(ImageError, match="not a squashfs image"):
        check_image(p)
    with pytest.raises(ImageError, match="not a squashfs image"):
        image_info(p)
    with pytest.raises(ImageError, match="cannot open"):
        SquashfsReader(tmp_path / "absent.sqfs")
    os.truncate(p, 10)
    with pytest.raises(ImageError):
        check_image(p)


def test_file_beyond_4gib(tmp_path):
    """An extended inode: size and sparse count past 32 bits, data past 4 GiB."""
    src = tmp_path / "src"
    src.mkdir()
    huge = src / "huge"
    with open(huge, "wb") as f:
        f.truncate(4 * 2**30 + 5)
        f.seek(4 * 2**30 + 12)
        f.write(b"past 4 GiB")
    img = mksquashfs(str(src), str(tmp_path / "i.sqfs"), "zstd")
    with SquashfsReader(img) as r:
        node = r.resolve("/huge")
        assert node.size == 4 * 2**30 + 22
        assert r.read(node, 4 * 2**30 + 10, 100) == b"\0\0past 4 GiB"
        assert r.read(node, 2**31, 8) == bytes(8)
    from tests.helpers.mounts import IS_ROOT, fuse_usable, kernel_mount, python_mount

    if IS_ROOT and fuse_usable():
        with kernel_mount(img, str(tmp_path / "k")) as k, python_mount(img, str(tmp_path / "f")) as m:
            for root in (k, m):
                st = os.stat(os.path.join(root, "huge"))
                assert (st.st_size, st.st_blocks) == (
                    os.stat(os.path.join(k, "huge")).st_size,
                    os.stat(os.path.join(k, "huge")).st_blocks,
                )
                with open(os.path.join(root, "huge"), "rb") as f:
                    assert os.pread(f.fileno(), 20, 4 * 2**30 + 8) == bytes(4) + b"past 4 GiB"


def test_getattr_matches_lstat_of_the_source(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"12345")
    os.symlink("d/f", src / "l")
    os.utime(src / "d" / "f", (1_000_000_000, 1_000_000_000))
    img = mksquashfs(str(src), str(tmp_path / "i.sqfs"), "gzip")
    with SquashfsReader(img) as r:
        for rel in ("d/f", "l"):  # a directory's size is its listing size in squashfs
            a = r.getattr(r.resolve("/" + rel))
            st = os.lstat(src / rel)
            assert (a["st_mode"], a["st_size"], a["st_mtime"]) == (st.st_mode, st.st_size, int(st.st_mtime))


@pytest.mark.parametrize(
    "args,expected",
    [
        (("-comp", "gzip", "-Xcompression-level", "6"), {"level": 6, "window_size": 15, "strategies": 0}),
        (("-comp", "zstd", "-Xcompression-level", "3"), {"level": 3}),
        (("-comp", "gzip"), {}),  # defaults: mksquashfs writes no options block
    ],
)
def test_info_reports_compressor_options(args, expected, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x" * 1000)
    img = mksquashfs(str(src), str(tmp_path / "i.sqfs"), args[1], *args[2:])
    info = image_info(img)
    assert info["compression"] == args[1]
    assert info["compression_options"] == expected
    assert ("compressor options" in info["flags"]) == bool(expected)
    assert info["files"] == 1 and info["file_bytes"] == 1000 and info["mkfs_time"] > 0


@pytest.mark.parametrize(
    "extra", [("-b", "4096"), ("-b", "1M"), ("-no-fragments",), ("-always-use-fragments",), ("-noI", "-noD")]
)
def test_layouts_read_back(extra, tmp_path):
    """Block sizes at both ends, no fragments, tail ends in fragments, raw metadata and data."""
    rng = random.Random(11)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    blobs = {}
    for n in (0, 5, 4095, 4097, 70_000, 1 << 20, (1 << 20) + 3, 2_500_000):
        data = rng.randbytes(n // 3) + b"q" * (n - n // 3)
        (src / "sub" / f"f{n}").write_bytes(data)
        blobs[f"/sub/f{n}"] = data
    img = mksquashfs(str(src), str(tmp_path / "i.sqfs"), "zstd", *extra)
    check_image(img)
    with SquashfsReader(img) as r:
        for path, data in blobs.items():
            node = r.resolve(path)
            assert r.read(node, 0, len(data)) == data
            for _ in range(20):
                off = rng.randrange(0, len(data) + 2)
                assert r.read(node, off, 5000) == data[off : off + 5000]


def test_refusals_name_the_problem(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data" * 1000)
    good = open(mksquashfs(str(src), str(tmp_path / "g.sqfs"), "gzip"), "rb").read()

    def variant(name, data):
        p = tmp_path / name
        p.write_bytes(data)
        return p

    bad_magic = variant("magic.sqfs", b"hsqX" + good[4:])
    lzo = variant("lzo.sqfs", good[:20] + (3).to_bytes(2, "little") + good[22:])
    unknown = variant("unknown.sqfs", good[:20] + (99).to_bytes(2, "little") + good[22:])
    v3 = variant("v3.sqfs", good[:28] + (3).to_bytes(2, "little") + good[30:])
    used = int.from_bytes(good[40:48], "little")
    truncated = variant("trunc.sqfs", good[: used - 10])
    for path, pattern in (
        (bad_magic, "bad magic"),
        (lzo, "lzo"),
        (unknown, "unsupported compressor id 99"),
        (v3, "version 3.0"),
        (truncated, "truncated"),
    ):
        for call in (check_image, image_info, SquashfsReader):
            with pytest.raises(ImageError, match=pattern):
                call(path)


def test_threads_share_one_reader(tmp_path):
    """Eight threads, one reader, tiny caches (constant eviction): every range still right."""
    import threading

    rng = random.Random(13)
    src = tmp_path / "src"
    src.mkdir()
    blobs = {}
    for i in range(6):
        data = rng.randbytes(300_000 + i * 50_000)
        (src / f"f{i}").write_bytes(data)
        blobs[f"/f{i}"] = data
    img = mksquashfs(str(src), str(tmp_path / "i.sqfs"), "zstd")
    errors = []
    with SquashfsReader(img, cache_bytes=300_000, metadata_cache_bytes=20_000) as r:

        def work(seed):
            local = random.Random(seed)
            try:
                for _ in range(300):
                    path = local.choice(list(blobs))
                    data = blobs[path]
                    off = local.randrange(len(data))
                    n = local.choice([1, 4096, 131072, 200_000])
                    if r.read(r.resolve(path), off, n) != data[off : off + n]:
                        errors.append((path, off, n))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
