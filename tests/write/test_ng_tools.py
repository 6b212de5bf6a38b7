"""A third implementation of the format judges our images: squashfs-tools-ng (Debian package
squashfs-tools-ng), written independently of squashfs-tools and of the kernel.

- sqfsdiff parses two images and compares them entry by entry (contents, owners, modes,
  timestamps, symlink targets, device numbers, inode types): our image of the edge tree must not
  differ from mksquashfs's image of the same tree;
- rdsquashfs unpacks our image with its own reader: the result must equal the source.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.helpers import snapshots
from tests.helpers.images import pack
from tests.helpers.mounts import IS_ROOT
from tests.helpers.trees import make_edge_tree

pytestmark = pytest.mark.skipif(
    not (shutil.which("sqfsdiff") and shutil.which("rdsquashfs") and shutil.which("mksquashfs")),
    reason="needs squashfs-tools-ng (sqfsdiff, rdsquashfs) and mksquashfs (scripts/bootstrap.sh installs them)",
)

COMPRESSORS = ["zstd", "gzip", "xz"]


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    base = os.fsencode(tmp_path_factory.mktemp("ng"))
    src = os.path.join(base, b"src")
    make_edge_tree(src, os.path.join(base, b"outside"))
    return src, base


def _mksquashfs(src: bytes, image: str, comp: str) -> str:
    subprocess.run(
        ["mksquashfs", src, image, "-comp", comp, "-noappend", "-no-progress", "-quiet"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return image


@pytest.mark.parametrize("comp", COMPRESSORS)
def test_sqfsdiff_sees_no_difference_to_mksquashfs(edge, comp):
    src, base = edge
    ours = os.path.join(os.fsdecode(base), f"ours-{comp}.sqfs")
    pack(src, ours, compression=comp, processors=2)
    theirs = _mksquashfs(src, os.path.join(os.fsdecode(base), f"mks-{comp}.sqfs"), comp)
    r = subprocess.run(["sqfsdiff", "-T", "-a", theirs, "-b", ours], capture_output=True, text=True)
    assert (r.returncode, r.stdout[:2000], r.stderr[:2000]) == (0, "", "")


def test_sqfsdiff_can_tell_a_difference(tmp_path):
    """The comparison above means something: one changed mode is reported."""
    images = []
    for name, mode in (("a", 0o644), ("b", 0o600)):
        src = tmp_path / name
        (src / "sub").mkdir(parents=True)
        (src / "sub" / "file").write_bytes(b"same content\n")
        os.chmod(src / "sub" / "file", mode)
        pack(os.fsencode(src), tmp_path / f"{name}.sqfs")
        images.append(str(tmp_path / f"{name}.sqfs"))
    r = subprocess.run(["sqfsdiff", "-a", images[0], "-b", images[1]], capture_output=True, text=True)
    assert r.returncode == 1 and "/sub/file" in r.stdout


def test_rdsquashfs_unpacks_the_source(edge, tmp_path):
    src, base = edge
    image = tmp_path / "ours.sqfs"
    pack(src, image, compression="zstd")
    out = tmp_path / "out"
    out.mkdir()
    flags = ["-X", "-T", "-C", "-O"] if IS_ROOT else ["-T", "-C"]
    r = subprocess.run(
        ["rdsquashfs", "-q", *flags, "-u", "/", "-p", str(out), str(image)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    # rdsquashfs sets a directory's time before filling it only for the root; it writes hard links
    # as separate files.  Both are its extraction choices, not what the image holds.
    ignore = {"links", "mtime:dir"} | (set() if IS_ROOT else {"uid", "gid", "xattrs"})
    snapshots.assert_same(snapshots.snapshot(src), snapshots.snapshot(out), ignore)
