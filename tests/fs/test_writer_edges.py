"""Trees users bring that the edge tree does not cover: limits of the format and odd sources.

Each case packs a source with the Python writer, reads it back through a kernel loop mount (and
unsquashfs where that is cheap) and compares it to the source. Where the format cannot store what
the source holds, packing must fail with one line through the CLI and leave nothing behind;
mksquashfs 4.5.1 is the reference for what is stored, and where it silently stores something else
the test says what we do instead. Trees and images are built once per module to stay fast.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.fs import treecompare
from tests.fs.conftest import IS_ROOT, kernel_mount, pack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

needs_root = pytest.mark.skipif(not IS_ROOT, reason="loop mounts, chown and mknod need root")


def cli_pack(src, image, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``cnd image pack --backend python`` in a child, running this checkout's code."""
    environ = dict(os.environ if env is None else env)
    environ["PYTHONPATH"] = ROOT + os.pathsep + environ.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "condainer", "image", "pack", "--backend", "python", *args]
    return subprocess.run(
        [*cmd, os.fspath(src), os.fspath(image)], capture_output=True, text=True, timeout=timeout, env=environ
    )


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
    treecompare.assert_same(treecompare.snapshot(many_ids, xattrs=False), treecompare.snapshot(mnt, xattrs=False))


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
