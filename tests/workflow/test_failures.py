"""Failures a user meets on real machines: no FUSE, a full disk, SIGTERM mid-build, prereq, cache."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys

import pytest

from .conftest import cnd, set_config, start_build
from .test_project import one_line_error


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is not installed")
def test_exec_without_dev_fuse_is_one_line(pip_project):
    # A private mount namespace with an empty /dev: what a container without FUSE looks like.
    script = (f"mount -t tmpfs none /dev && exec {sys.executable} -m condainer -d {pip_project} "
              f"exec -- python -c pass")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=60)
    msg = one_line_error(r)
    assert "/dev/fuse does not exist" in msg


def test_pack_into_a_full_disk_leaves_no_image(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    (src / "random.bin").write_bytes(__import__("os").urandom(3 << 20))
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        res = cnd("image", "pack", str(src), str(small / "out.sqfs"), "--backend", "native")
        one_line_error(res)
        assert list(small.iterdir()) == [], "no image and no temporary file may remain"
    finally:
        subprocess.run(["umount", "-l", str(small)])


def test_sigterm_during_build_removes_staging(tmp_path, mount_base):
    # A requirements file that makes pip wait on a slow local "index" is overkill; a large install
    # is not needed either: the venv + pip step lasts long enough to be interrupted.
    (tmp_path / "requirements.txt").write_text("six\n")
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base))
    proc, staging = start_build(tmp_path)
    assert (staging / "bin").exists(), "the build never started staging"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in err
    assert not staging.exists(), "SIGTERM must not leave the staging directory behind"
    assert not list(tmp_path.glob("*.squashfs"))


def test_prereq_reports_choices():
    r = cnd("prereq")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("pack:   native") and "mksquashfs" in lines[0]
    assert lines[1].startswith("mount:  native") and "squashfuse" in lines[1]
    assert lines[2] == "fuse:   usable"


def test_cache_reads_the_whole_image(pip_project):
    r = cnd("cache", cwd=pip_project)
    assert r.returncode == 0, r.stderr
    size = next(pip_project.glob("*.squashfs")).stat().st_size
    assert "read into the page cache" in r.stderr
    assert f"{size / 1024 / 1024:.1f} MiB" in r.stderr
    assert cnd("-q", "cache", cwd=pip_project).stderr == ""
