"""Hypothesis-generated trees, packed with every compressor, read back and compared to the source.

A small block size (4 KiB) lets tiny files still have several blocks, tails, fragments, sparse
blocks and duplicates. Every example is checked through unsquashfs (xattrs included) and, where it
can read the names, PySquashfsImage; every fourth through a kernel loop mount.
"""

from __future__ import annotations

import itertools
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import snapshots
from tests.helpers.images import pack, unsquashfs
from tests.helpers.mounts import HAVE_UNSQUASHFS, IS_ROOT, kernel_mount

BS = 4096
EXAMPLES = int(os.environ.get("CONDAINER_HYPOTHESIS_EXAMPLES", "100"))

names = (
    st.one_of(
        st.binary(min_size=1, max_size=12),
        st.text(st.characters(codec="utf-8", exclude_characters="/\0"), min_size=1, max_size=12).map(
            str.encode
        ),
        st.binary(min_size=250, max_size=255),
    )
    .map(lambda n: n.replace(b"/", b"_").replace(b"\0", b"_"))
    .map(lambda n: n + b"_" if n in (b".", b"..") else n)
)


@st.composite
def contents(draw) -> bytes:
    kind = draw(st.sampled_from(["small", "blocks", "sparse", "dup"]))
    if kind == "small":
        return draw(st.binary(max_size=300))
    if kind == "dup":
        return b"duplicate content " * draw(st.sampled_from([1, 300, 1000]))
    nblocks = draw(st.integers(0, 4))
    extra = draw(st.sampled_from([0, 1, BS - 1, 777]))
    seed = draw(st.integers(0, 255))
    pieces = []
    for i in range(nblocks):
        zero = kind == "sparse" and draw(st.booleans())
        pieces.append(bytes(BS) if zero else bytes((seed + i + j * 7) & 0xFF for j in range(BS)))
    return b"".join(pieces) + bytes([seed]) * extra


meta = st.fixed_dictionaries(
    {
        "mode": st.sampled_from([0o644, 0o755, 0o600, 0o4755, 0o2750, 0o000, 0o1777]),
        "mtime": st.integers(0, 2**32 - 1),
        "owner": st.sampled_from([(0, 0), (1000, 1000), (65535, 65536), (100000, 100000), (2**32 - 2, 7)]),
        "xattrs": st.dictionaries(
            st.binary(min_size=1, max_size=10).map(lambda b: b.replace(b"\0", b"_")),
            st.binary(max_size=40),
            max_size=3,
        ),
    }
)

leaf = st.one_of(
    st.tuples(st.just("file"), contents(), meta),
    st.tuples(
        st.just("symlink"), st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"\0", b"_")), meta
    ),
    st.tuples(st.just("fifo"), st.none(), meta),
)
tree = st.recursive(
    leaf,
    lambda kids: st.tuples(st.just("dir"), st.dictionaries(names, kids, max_size=7), meta),
    max_leaves=25,
)
root = st.tuples(st.just("dir"), st.dictionaries(names, tree, max_size=8), meta)


def build(path: bytes, node, files: list, dirs: list) -> None:
    kind, body, m = node
    if kind == "dir":
        os.mkdir(path)
        for name, child in body.items():
            build(os.path.join(path, name), child, files, dirs)
        dirs.append((path, m))
        return
    if kind == "file":
        with open(path, "wb") as f:
            f.write(body)
        files.append(path)
    elif kind == "symlink":
        os.symlink(body, path)
    else:
        os.mkfifo(path)
    apply_meta(path, kind, m)


def apply_meta(path: bytes, kind: str, m: dict) -> None:
    if IS_ROOT:
        os.lchown(path, *m["owner"])
    if kind in ("file", "dir"):
        for key, value in m["xattrs"].items():
            os.setxattr(path, b"user." + key, value)
    if kind != "symlink":
        os.chmod(path, m["mode"] if kind == "dir" or m["mode"] != 0o1777 else 0o644)
    os.utime(path, (m["mtime"], m["mtime"]), follow_symlinks=False)


counter = itertools.count()


def check(spec, links, comp: str, processors: int) -> None:
    with tempfile.TemporaryDirectory(prefix="hyp-") as tmp:
        tmp_b = os.fsencode(tmp)
        src = os.path.join(tmp_b, b"src")
        files: list[bytes] = []
        dirs: list[tuple[bytes, dict]] = []
        build(src, spec, files, dirs)
        for f_index, d_index, name in links:
            if files and dirs:
                target = os.path.join(dirs[d_index % len(dirs)][0], name)
                if not os.path.lexists(target):
                    os.link(files[f_index % len(files)], target)
        for path, m in dirs:  # children changed the directories' mtimes; set them last
            os.utime(path, (m["mtime"], m["mtime"]))
            os.chmod(path, m["mode"])
        expected = snapshots.snapshot(src)
        image = os.path.join(tmp_b, b"img.sqfs")
        pack(src, image, compression=comp, block_size=BS, processors=processors)
        snapshots.assert_same(expected, snapshots.snapshot(unsquashfs(image, tmp)))
        utf8 = all(_is_utf8(p) for p in expected)
        if utf8 and comp != "lz4":  # PySquashfsImage 0.9.0: UTF-8 names only, lz4 broken
            snapshots.assert_same(expected, snapshots.snapshot_image(image), {"xattrs"})
        if IS_ROOT and next(counter) % 4 == 0:
            with kernel_mount(image) as mnt:
                snapshots.assert_same(expected, snapshots.snapshot(mnt))


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode()
        return True
    except UnicodeDecodeError:
        return False


link_specs = st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), names), max_size=3)


@pytest.mark.skipif(not HAVE_UNSQUASHFS, reason="unsquashfs not installed")
@pytest.mark.parametrize("comp", ["zstd", "gzip", "xz", "lz4", "none"])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(spec=root, links=link_specs, processors=st.sampled_from([1, 1, 1, 2]))
def test_random_trees(comp, spec, links, processors):
    check(spec, links, comp, processors)
