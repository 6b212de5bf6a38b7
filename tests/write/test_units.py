"""Byte-exact unit tests of the metadata stream, directory runs, lookup tables and inode choices."""

from __future__ import annotations

import hashlib
import os
import random
import struct
import zlib

import pytest

from condainer.errors import ImageError
from condainer.fs import format as fmt
from condainer.fs.compression import make_codec
from condainer.fs.writer import inodes
from condainer.fs.writer.directory import DirEntry, Listing, write_listing
from condainer.fs.writer.metablock import MetadataWriter
from condainer.fs.writer.tables import IdTable, XattrTable, lookup_table
from condainer.fs.writer.twins import HASHED, FirstOfSize, TwinIndex

RAW = make_codec("none", None, 1 << 17)


def raw_writer() -> MetadataWriter:
    return MetadataWriter(RAW)


def test_metablock_raw_chunks_and_references():
    mw = raw_writer()
    assert mw.reference() == 0
    mw.write(b"a" * 8192)
    assert mw.position() == (8194, 0)
    mw.write(b"b" * 5)
    assert mw.reference() == (8194 << 16) | 5
    assert mw.append(b"c" * 8190) == (8194 << 16) | 5  # where it starts; it spans two chunks
    assert mw.reference() == (2 * 8194 << 16) | 3
    out = mw.finish()
    assert out == (
        struct.pack("<H", 0x8000 | 8192) + b"a" * 8192
        + struct.pack("<H", 0x8000 | 8192) + b"b" * 5 + b"c" * 8187
        + struct.pack("<H", 0x8000 | 3) + b"c" * 3
    )
    assert mw.chunk_starts() == [0, 8194, 2 * 8194]


def test_metablock_compressed_and_incompressible_chunks():
    mw = MetadataWriter(make_codec("gzip", 9, 1 << 17))
    mw.write(b"z" * 8192)  # shrinks: stored compressed
    incompressible = random.Random(5).randbytes(1000)
    mw.write(incompressible)  # zlib cannot shrink random bytes: stored raw
    out = mw.finish()
    (h1,) = struct.unpack_from("<H", out, 0)
    assert not h1 & 0x8000
    assert zlib.decompress(out[2 : 2 + h1]) == b"z" * 8192
    (h2,) = struct.unpack_from("<H", out, 2 + h1)
    assert h2 == 0x8000 | 1000 and out[4 + h1 :] == incompressible


def test_metablock_refuses_writes_after_finish():
    mw = raw_writer()
    mw.finish()
    with pytest.raises(RuntimeError):
        mw.write(b"x")


def parse_listing(stream: bytes, listing: Listing) -> list[tuple]:
    """Read headers and entries back from a raw (identity) directory stream."""
    data = b"".join(stream[i + 2 : i + 2 + 8192] for i in range(0, len(stream), 8194))
    pos = listing.start_block // 8194 * 8192 + listing.start_offset
    end = pos + listing.size
    runs = []
    while pos < end:
        count, block, base = fmt.DIR_HEADER.unpack_from(data, pos)
        pos += 12
        entries = []
        for _ in range(count + 1):
            offset, delta, itype, size = fmt.DIR_ENTRY.unpack_from(data, pos)
            name = data[pos + 8 : pos + 9 + size]
            entries.append((offset, base + delta, itype, name))
            pos += 9 + size
        runs.append((block, base, entries))
    assert pos == end
    return runs


def entries(n: int, block: int = 0, first: int = 1, step: int = 1, name_len: int = 4) -> list[DirEntry]:
    return [
        DirEntry(b"%0*d" % (name_len, i), (block << 16) | (i * 32 % 8192), first + i * step, fmt.FILE)
        for i in range(n)
    ]


def test_directory_small_listing_is_byte_exact():
    mw = raw_writer()
    listing = write_listing(
        mw, [DirEntry(b"a", (0 << 16) | 10, 5, fmt.FILE), DirEntry(b"bc", (0 << 16) | 40, 7, fmt.SYMLINK)]
    )
    expected = (
        struct.pack("<IIi", 1, 0, 5)
        + struct.pack("<HhHH", 10, 0, 2, 0)
        + b"a"
        + struct.pack("<HhHH", 40, 2, 3, 1)
        + b"bc"
    )
    assert (listing.start_block, listing.start_offset, listing.size, listing.index) == (
        0,
        0,
        len(expected),
        [],
    )
    assert mw.finish() == struct.pack("<H", 0x8000 | len(expected)) + expected


def test_directory_header_restarts_at_256_entries():
    mw = raw_writer()
    listing = write_listing(mw, entries(300))
    runs = parse_listing(mw.finish(), listing)
    assert [len(r[2]) for r in runs] == [256, 44]
    assert runs[1][1] == 257  # base of the second run is its first inode number
    assert listing.index == []


def test_directory_header_restarts_when_inode_block_changes():
    mw = raw_writer()
    es = entries(3) + [DirEntry(b"zz", (9000 << 16) | 4, 4, fmt.FILE)]
    runs = parse_listing(mw.finish() if (listing := write_listing(mw, es)) else b"", listing)
    assert [(r[0], len(r[2])) for r in runs] == [(0, 3), (9000, 1)]


def test_directory_header_restarts_when_delta_leaves_s16():
    mw = raw_writer()
    es = [
        DirEntry(b"a", 0, 1, fmt.FILE),
        DirEntry(b"b", 32, 32768, fmt.FILE),
        DirEntry(b"c", 64, 32769, fmt.FILE),
        DirEntry(b"d", 96, 2, fmt.FILE),
    ]
    listing = write_listing(mw, es)
    runs = parse_listing(mw.finish(), listing)
    assert [[e[1] for e in r[2]] for r in runs] == [[1, 32768], [32769, 2]]


def test_directory_header_restarts_at_metadata_block_crossing_with_index():
    mw = raw_writer()
    mw.write(b"\0" * 100)  # the listing starts mid-block
    es = entries(200, name_len=100)  # 200 * 108 bytes: crosses two 8 KiB boundaries
    listing = write_listing(mw, es)
    stream = mw.finish()
    runs = parse_listing(stream, listing)
    assert len(runs) == 3 and sum(len(r[2]) for r in runs) == 200
    assert len(listing.index) == 2
    # Each index entry: offset of its header in the listing, start of the block holding the header.
    data = b"".join(stream[i + 2 : i + 2 + 8192] for i in range(0, len(stream), 8194))
    for n, raw in enumerate(listing.index):
        offset, block, size = fmt.DIR_INDEX.unpack_from(raw)
        name = raw[12:]
        absolute = 100 + offset
        assert block == absolute // 8192 * 8194
        assert len(name) == size + 1 and name == runs[n + 1][2][0][3]
        assert fmt.DIR_HEADER.unpack_from(data, absolute)[1] == 0
        # the header sits in the first 108 bytes of its block (the previous entry crossed into it)
        assert absolute % 8192 < 108 + 12


def test_lookup_table_index_points_at_each_block():
    comp = RAW
    entries = bytes(range(256)) * 40  # 10240 bytes: two metadata blocks
    blob, index_pos = lookup_table(entries, 5000, comp)
    assert index_pos == 5000 + 8194 + 2 + 2048
    assert blob[index_pos - 5000 :] == struct.pack("<QQ", 5000, 5000 + 8194)
    empty, pos = lookup_table(b"", 777, comp)
    assert empty == b"" and pos == 777  # an empty table is zero bytes at its position


def test_id_table_keeps_first_use_order_and_32_bit_ids():
    ids = IdTable()
    assert [ids.index(v) for v in (100000, 0, 100000, 4000000000)] == [0, 1, 0, 2]
    assert ids.entries() == struct.pack("<III", 100000, 0, 4000000000)


def test_xattr_table_layout_and_sharing():
    xt = XattrTable(RAW)
    pairs = ((b"security.s", b"v"), (b"user.empty", b""))
    assert xt.index(()) == fmt.NO_XATTR
    assert xt.index(pairs) == 0 and xt.index(pairs) == 0 and xt.index(((b"trusted.t", b"x"),)) == 1
    blob, header_pos = xt.write(1000)
    kv = (
        struct.pack("<HH", 2, 1)
        + b"s"
        + struct.pack("<I", 1)
        + b"v"
        + struct.pack("<HH", 0, 5)
        + b"empty"
        + struct.pack("<I", 0)
    )
    kv2 = struct.pack("<HH", 1, 1) + b"t" + struct.pack("<I", 1) + b"x"
    assert blob.startswith(struct.pack("<H", 0x8000 | len(kv + kv2)) + kv + kv2)
    ids_at = 1000 + 2 + len(kv + kv2)
    # Sizes as mksquashfs counts them (the kernel adds them to st_blocks): full name + NUL + value.
    size, size2 = len(b"security.s\0v") + len(b"user.empty\0"), len(b"trusted.t\0x")
    ids = struct.pack("<QII", 0, 2, size) + struct.pack("<QII", len(kv), 1, size2)
    assert blob[ids_at - 1000 :] == (
        struct.pack("<H", 0x8000 | 32) + ids + struct.pack("<QII", 1000, 2, 0) + struct.pack("<Q", ids_at)
    )
    assert header_pos == ids_at + 34


def test_superblock_layout():
    sb = fmt.Superblock(inode_count=3, mkfs_time=7, block_size=1 << 17, compressor=fmt.COMP_ZSTD, id_count=1)
    raw = sb.pack()
    assert len(raw) == 96 and raw[:4] == b"hsqs"
    assert struct.unpack_from("<HH", raw, 28) == (4, 0)
    assert struct.unpack_from("<H", raw, 22)[0] == 17


def common():
    return (0o100644, 0, 0, 0, 1)


def regular(size, nlink, xattr, start=0, nblocks=0, sparse=0, holey=True):
    """inodes.regular for a file of ``size`` with its tail in fragment 0 at offset 0."""
    blocks = bytes(4 * nblocks)
    return inodes.regular(common(), size, start, blocks, 0, 0, sparse, nlink, xattr, holey)


def test_file_inode_basic_and_extended_choices():
    assert regular(10, 1, fmt.NO_XATTR)[0] == fmt.FILE
    assert regular(10, 2, fmt.NO_XATTR)[0] == fmt.EXT_FILE  # hard link
    assert regular(10, 1, 0)[0] == fmt.EXT_FILE  # xattrs
    huge = (1 << 32) // (1 << 17)
    assert regular(1 << 32, 1, fmt.NO_XATTR, nblocks=huge)[0] == fmt.EXT_FILE  # size >= 4 GiB
    t, record = regular(10, 1, fmt.NO_XATTR, start=1 << 32)
    assert t == fmt.EXT_FILE and fmt.EXT_FILE_INODE.unpack_from(record, 16)[0] == 1 << 32  # start >= 4 GiB
    t, record = regular(1 << 17, 1, fmt.NO_XATTR, nblocks=1, sparse=1 << 17)
    assert t == fmt.EXT_FILE and fmt.EXT_FILE_INODE.unpack_from(record, 16)[2] == (1 << 17) - 1
    # Zero blocks of a source file that had no holes: stored sparse, but not counted (mksquashfs).
    assert regular(1 << 17, 1, fmt.NO_XATTR, nblocks=1, sparse=1 << 17, holey=False)[0] == fmt.FILE


def test_directory_inode_choices():
    small = Listing(0, 0, 100, [])
    assert inodes.directory(common(), small, 2, 0, fmt.NO_XATTR, 5)[0] == fmt.DIR
    assert inodes.directory(common(), small, 2, 0, 0, 5)[0] == fmt.EXT_DIR
    assert inodes.directory(common(), small, 2, 0, fmt.NO_XATTR, 300)[0] == fmt.EXT_DIR
    indexed = Listing(0, 0, 100, [b"x" * 13])
    t, record = inodes.directory(common(), indexed, 2, 0, fmt.NO_XATTR, 5)
    assert t == fmt.EXT_DIR and record.endswith(b"x" * 13)
    assert fmt.EXT_DIR_INODE.unpack_from(record, 16)[4] == 1
    huge = Listing(0, 0, 70000, [])
    assert inodes.directory(common(), huge, 2, 0, fmt.NO_XATTR, 5)[0] == fmt.EXT_DIR


def test_device_number_encoding_matches_the_spec():
    dev = fmt.encode_device(4095, 1048575)
    assert (dev & 0xFFF00) >> 8 == 4095
    assert (dev & 0xFF) | ((dev >> 12) & 0xFFF00) == 1048575


@pytest.mark.parametrize(
    "name,level,block",
    [
        ("zstd", 23, 1 << 17),
        ("gzip", 0, 1 << 17),
        ("bz2", None, 1 << 17),
        ("zstd", None, 3000),
        ("zstd", None, 3 << 16),
    ],
)
def test_bad_settings_are_one_line_image_errors(name, level, block):
    with pytest.raises(ImageError) as info:
        make_codec(name, level, block)
    assert "\n" not in str(info.value)


def test_compressor_options_written_where_mksquashfs_writes_them():
    assert make_codec("zstd", 15, 1 << 17).options_block() == b""
    assert make_codec("zstd", 3, 1 << 17).options_block() == struct.pack("<I", 3)
    assert make_codec("gzip", 9, 1 << 17).options_block() == b""
    assert make_codec("gzip", 6, 1 << 17).options_block() == struct.pack("<IHH", 6, 15, 0)
    assert make_codec("xz", None, 1 << 17).options_block() == b""
    assert make_codec("lz4", None, 1 << 17).options_block() == struct.pack("<II", 1, 0)
    assert make_codec("none", None, 1 << 17).options_block() == b""


def test_zstd_frames_record_their_content_size():
    import zstandard

    frame = make_codec("zstd", 19, 1 << 17).compressor()(b"abc" * 1000)
    assert zstandard.frame_content_size(frame) == 3000


@pytest.mark.parametrize(
    "files,expected",
    [
        ({"cpu.max": "150000 100000\n"}, 2),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.cfs_quota_us": "50000\n", "cpu.cfs_period_us": "100000\n"}, 1),
        ({"cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n"}, None),
    ],
)
def test_cgroup_cpu_quota_files(tmp_path, files, expected):
    from condainer.fs.host import _read_quota

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    name = "cpu.max" if "cpu.max" in files else "cpu.cfs_quota_us"
    assert _read_quota(str(tmp_path), name) == expected


def test_default_processors_is_within_the_affinity_mask():
    import os

    from condainer.fs.host import usable_cpus as default_processors

    assert 1 <= default_processors() <= len(os.sched_getaffinity(0))


def _superblock(image) -> dict:
    raw = open(image, "rb").read(96)
    names = [
        "magic",
        "inodes",
        "mkfs_time",
        "block_size",
        "fragments",
        "compressor",
        "block_log",
        "flags",
        "ids",
        "major",
        "minor",
        "root",
        "bytes_used",
        "id_table",
        "xattr_table",
        "inode_table",
        "directory_table",
        "fragment_table",
        "export_table",
    ]
    return dict(zip(names, fmt.SUPERBLOCK.unpack(raw), strict=True))


def _u64s(image, offset: int, count: int) -> list[int]:
    with open(image, "rb") as f:
        f.seek(offset)
        return list(struct.unpack(f"<{count}Q", f.read(8 * count)))


@pytest.mark.parametrize("with_fragments", [True, False])
@pytest.mark.parametrize("with_xattrs", [True, False])
def test_lookup_tables_sit_back_to_back(tmp_path, with_fragments, with_xattrs):
    """What the kernel checks at mount: each index ends exactly where the next table begins."""
    from tests.helpers.images import pack

    src = tmp_path / "src"
    src.mkdir()
    for i in range(1500):  # two export blocks (1024 inodes each)
        (src / f"f{i}").write_bytes(b"x" * (5 if with_fragments else 0))
    (src / "blocks").write_bytes(random.Random(1).randbytes(2 << 17))
    if with_xattrs:
        os.setxattr(src / "blocks", b"user.k", b"v")
    image = tmp_path / "img.sqfs"
    pack(src, image)
    sb = _superblock(image)
    assert sb["magic"] == fmt.MAGIC and (sb["major"], sb["minor"]) == (4, 0)
    assert os.path.getsize(image) == -(-sb["bytes_used"] // 4096) * 4096
    assert sb["inode_table"] < sb["directory_table"] < sb["fragment_table"] <= sb["export_table"]
    frag_blocks = -(-sb["fragments"] * 16 // 8192)
    export_blocks = -(-sb["inodes"] * 8 // 8192)
    id_blocks = -(-sb["ids"] * 4 // 8192)
    exports = _u64s(image, sb["export_table"], export_blocks)
    ids = _u64s(image, sb["id_table"], id_blocks)
    if with_fragments:
        frags = _u64s(image, sb["fragment_table"], frag_blocks)
        assert sb["fragment_table"] + 8 * frag_blocks == exports[0]
        assert frags[0] > sb["directory_table"]
    else:
        assert sb["fragments"] == 0 and sb["fragment_table"] == exports[0]  # an empty table, not 0xFF..
    assert export_blocks == 2 and 0 < exports[1] - exports[0] <= 8194
    assert sb["export_table"] + 8 * export_blocks == ids[0]
    if with_xattrs:
        kv_start, count, _ = fmt.XATTR_TABLE_HEADER.unpack(open(image, "rb").read()[sb["xattr_table"] :][:16])
        assert sb["id_table"] + 8 * id_blocks == kv_start and count == 1
    else:
        assert sb["xattr_table"] == fmt.NO_TABLE and sb["id_table"] + 8 * id_blocks == sb["bytes_used"]


def test_twin_index_matches_size_and_whole_digest_only():
    index = TwinIndex()  # starts with 8 slots: the table grows many times
    digests = [hashlib.sha256(b"%d" % i).digest() for i in range(500)]
    for record, digest in enumerate(digests):
        assert index.find_or_add(100, digest, record) == record
    # Same first bytes, another end: not a twin. Same digest, another size: not a twin either.
    near = digests[7][:31] + bytes([digests[7][31] ^ 1])
    assert index.find_or_add(100, near, 500) == 500
    assert index.find_or_add(101, digests[7], 501) == 501
    for record, digest in enumerate(digests):
        assert index.find_or_add(100, digest, 9999) == record
    assert index.find_or_add(100, near, 9999) == 500 and index.find_or_add(101, digests[7], 9999) == 501
    assert len(index) == 502


def test_first_of_size_remembers_one_file_per_size_until_the_size_comes_again():
    sizes = FirstOfSize()  # starts with 8 slots: grows many times below
    for size in range(1000):
        assert sizes.first(size * 4096, record=size, entry=size + 1, ctime_ns=size + 2) is None
    for size in range(0, 1000, 3):
        assert sizes.first(size * 4096, record=9999, entry=9999, ctime_ns=9999) == (size, size + 1, size + 2)
    for size in range(0, 1000, 3):  # the first file is handed back once only: hashed from then on
        assert sizes.first(size * 4096, record=9999, entry=9999, ctime_ns=9999) == (HASHED, size + 1, size + 2)
    assert sizes.first(1, record=7, entry=8, ctime_ns=9) is None  # a size never seen
    assert sizes.first(4096, record=9999, entry=9999, ctime_ns=9999) == (1, 2, 3)  # 1 * 4096: not yet hashed
