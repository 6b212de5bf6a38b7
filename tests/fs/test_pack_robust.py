"""`cnd image pack` with both backends against hostile outputs, killed parents, signals, unreadable input.

Real processes, real signals and the real mksquashfs; nothing here needs more than a few seconds.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys

import pytest

from condainer.backends.pack import pack
from condainer.errors import ImageError
from condainer.fs.options import PackOptions
from tests.fs.conftest import IS_ROOT

HAVE_MKSQUASHFS = shutil.which("mksquashfs") is not None
BACKENDS = [
    "python",
    pytest.param("native", marks=pytest.mark.skipif(not HAVE_MKSQUASHFS, reason="needs mksquashfs")),
]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = [sys.executable, "-m", "condainer", "image", "pack"]
ENV = {**os.environ, "PYTHONPATH": REPO}
OPTS = PackOptions(progress=False, processors=1)


def tiny_source(root) -> None:
    os.makedirs(root)
    with open(os.path.join(root, "f"), "w") as f:
        f.write("hello\n")


# --- 1. the output path -----------------------------------------------------------------------


def make_target(path, kind: str) -> None:
    if kind == "symlink":
        (path.parent / "precious").write_text("precious\n")
        os.symlink("precious", path)
    elif kind == "dangling-symlink":
        os.symlink("nowhere", path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "chardev":
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "directory":
        path.mkdir()


KINDS = ["symlink", "dangling-symlink", "fifo", "socket", "directory",
         pytest.param("chardev", marks=pytest.mark.skipif(not IS_ROOT, reason="mknod needs root"))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_existing_non_regular_output_is_refused_and_kept(tmp_path, backend, kind):
    tiny_source(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    target = out / "img.sqfs"
    make_target(target, kind)
    before = {name: os.lstat(out / name) for name in os.listdir(out)}
    with pytest.raises(ImageError) as info:
        pack(tmp_path / "src", target, OPTS, backend)
    assert "refusing to replace" in info.value.message and "\n" not in info.value.message
    after = {name: os.lstat(out / name) for name in os.listdir(out)}
    assert set(after) == set(before), "no temporary file may be left"
    for name, st in before.items():
        assert (after[name].st_mode, after[name].st_ino, after[name].st_rdev) == (st.st_mode, st.st_ino, st.st_rdev)
    if kind == "symlink":
        assert (out / "precious").read_text() == "precious\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_existing_fifo_output_is_refused_by_the_cli(tmp_path, backend):
    tiny_source(tmp_path / "src")
    os.mkfifo(tmp_path / "img.sqfs")
    res = subprocess.run([*CLI, "--backend", backend, str(tmp_path / "src"), str(tmp_path / "img.sqfs")],
                         capture_output=True, text=True, env=ENV, timeout=20)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnd: error: ") and "FIFO" in lines[0], res.stderr
    assert stat.S_ISFIFO(os.lstat(tmp_path / "img.sqfs").st_mode)
    assert sorted(os.listdir(tmp_path)) == ["img.sqfs", "src"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_existing_regular_output_is_replaced(tmp_path, backend):
    tiny_source(tmp_path / "src")
    target = tmp_path / "img.sqfs"
    target.write_text("an older image")
    old_inode = target.stat().st_ino
    pack(tmp_path / "src", target, OPTS, backend)
    assert target.read_bytes()[:4] == b"hsqs" and target.stat().st_ino != old_inode
    assert sorted(os.listdir(tmp_path)) == ["img.sqfs", "src"]
