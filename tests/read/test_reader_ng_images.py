"""Images from another writer: squashfs-tools-ng's gensquashfs (a directory) and tar2sqfs (a tar
stream) lay out fragments, ids, directories and xattrs their own way.  Our FUSE mount of each must
equal the kernel's loop mount of the same image, over the whole tree (metadata incl. st_blocks,
content, xattrs, hard-link groups)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.helpers.cnd import cnd
from tests.helpers.mounts import IS_ROOT, fuse_usable, kernel_mount, python_mount, unmount
from tests.helpers.snapshots import diff_stat_snapshots, stat_snapshot
from tests.helpers.trees import build_tree

pytestmark = [
    pytest.mark.skipif(
        not (shutil.which("gensquashfs") and shutil.which("tar2sqfs")),
        reason="needs squashfs-tools-ng (scripts/bootstrap.sh installs it)",
    ),
    pytest.mark.skipif(not (IS_ROOT and fuse_usable()), reason="kernel loop mounts need root, and /dev/fuse"),
]

VARIANTS = {
    "gen-zstd": ["gensquashfs", "-c", "zstd"],
    "gen-gzip-4k": ["gensquashfs", "-c", "gzip", "-b", "4096"],
    "gen-xz-1m-notail": ["gensquashfs", "-c", "xz", "-b", "1048576", "-T"],
    "gen-zstd-exportable-allroot": ["gensquashfs", "-c", "zstd", "-e", "--all-root"],
    "tar-zstd": ["tar2sqfs", "-c", "zstd"],
    "tar-gzip-nodedup": ["tar2sqfs", "-c", "gzip", "-s"],
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    src = str(tmp_path_factory.mktemp("ng-src") / "tree")
    build_tree(src, big_dir=600)
    return src


def _make(variant: str, src: str, image: str) -> str:
    cmd = VARIANTS[variant]
    if cmd[0] == "gensquashfs":
        subprocess.run([*cmd, "-D", src, "-k", "-x", "-q", "-f", image], check=True, capture_output=True)
    else:
        tar = subprocess.Popen(["tar", "--xattrs", "--xattrs-include=*", "-C", src, "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        r = subprocess.run([*cmd, "-q", "-f", image], stdin=tar.stdout, capture_output=True)
        tar.stdout.close()
        assert tar.wait() == 0
        assert r.returncode == 0, r.stderr
    return image


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_fuse_mount_equals_kernel_mount(variant, tree, tmp_path):
    image = _make(variant, tree, str(tmp_path / f"{variant}.sqfs"))
    with kernel_mount(image, str(tmp_path / "k")) as kmnt:
        expected = stat_snapshot(kmnt)
    mnt = str(tmp_path / "ours")
    try:
        with python_mount(image, mnt, log_path=str(tmp_path / "fuse.log")):
            got = stat_snapshot(mnt)
    finally:
        unmount(mnt)
    assert len(expected) > 600
    assert sum(1 for entry in expected.values() if entry[10]) >= 3  # xattrs made it into the image
    assert diff_stat_snapshots(expected, got) == []
    r = cnd("image", "check", image, timeout=None)
    assert r.returncode == 0, r.stderr
