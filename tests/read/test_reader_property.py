"""Generated trees: whatever mksquashfs packs, the reader gives back (names, types, modes, sizes,
contents, symlink targets, hard links)."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from condainer.fs.reader import SquashfsReader, walk
from tests.helpers.images import mksquashfs
from tests.helpers.mounts import have

pytestmark = pytest.mark.skipif(not have("mksquashfs"), reason="needs mksquashfs")

NAME = st.binary(min_size=1, max_size=40).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
)
SIZES = st.sampled_from([0, 1, 100, 4095, 4096, 4097, 131071, 131072, 131073, 300_001])
ENTRY = st.one_of(
    st.tuples(st.just("file"), SIZES, st.integers(0, 255), st.sampled_from([0o644, 0o755, 0o600, 0o4711])),
    st.tuples(st.just("dir"), st.just(0), st.just(0), st.sampled_from([0o755, 0o700, 0o1777])),
    st.tuples(st.just("link"), st.integers(1, 300), st.integers(0, 255), st.just(0o777)),
    st.tuples(st.just("hard"), st.just(0), st.just(0), st.just(0)),
)
TREE = st.lists(st.tuples(st.integers(0, 3), NAME, ENTRY), min_size=1, max_size=40)


def build(root: bytes, spec) -> None:
    dirs = [root]
    files: list[bytes] = []
    for parent_i, name, (kind, size, fill, mode) in spec:
        parent = dirs[parent_i % len(dirs)]
        path = os.path.join(parent, name)
        if os.path.lexists(path):
            continue
        if kind == "file":
            with open(path, "wb") as f:
                f.write(bytes([fill]) * (size // 2) + os.urandom(size - size // 2))
            os.chmod(path, mode)
            files.append(path)
        elif kind == "dir":
            os.mkdir(path)
            os.chmod(path, mode)
            dirs.append(path)
        elif kind == "link":
            os.symlink(bytes([65 + fill % 26]) * size, path)
        elif files:
            os.link(files[fill % len(files)], path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=TREE, comp=st.sampled_from(["zstd", "gzip"]))
def test_reader_gives_back_what_was_packed(spec, comp, tmp_path_factory):
    base = tmp_path_factory.mktemp("prop")
    root = os.path.join(os.fsencode(str(base)), b"src")
    os.mkdir(root)
    build(root, spec)
    img = mksquashfs(os.fsdecode(root), str(base / "i.sqfs"), comp)
    with SquashfsReader(img) as r:
        seen = {}
        for path, node in walk(r):
            src = root + path
            st_ = os.lstat(src)
            assert node.mode == st_.st_mode, path
            assert node.nlink == st_.st_nlink, path
            if stat.S_ISREG(st_.st_mode):
                assert node.size == st_.st_size
                with open(src, "rb") as f:
                    assert r.read(node, 0, node.size + 1) == f.read(), path
                seen.setdefault(st_.st_ino, set()).add(node.ino)
            elif stat.S_ISLNK(st_.st_mode):
                assert r.readlink(node) == os.readlink(src)
        expected = set()
        for dirpath, dirnames, filenames in os.walk(root):
            for n in dirnames + filenames:
                expected.add(os.path.join(dirpath, n)[len(root) :])
        assert {p for p, _ in walk(r)} == expected
    # hard links share one squashfs inode, distinct files do not
    assert all(len(v) == 1 for v in seen.values())
    assert len({next(iter(v)) for v in seen.values()}) == len(seen)
