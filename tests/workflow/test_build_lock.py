"""Two `cnd build` of one project on one node: the second fails at once and leaves the first alone."""

from __future__ import annotations

import subprocess
import sys
import time

from .conftest import cnd, mountpoint_of, set_config
from .test_project import one_line_error


def test_second_concurrent_build_is_refused_in_one_line(tmp_path, mount_base):
    (tmp_path / "requirements.txt").write_text("six\n")
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base))
    first = subprocess.Popen([sys.executable, "-m", "condainer", "build"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        staging = mountpoint_of(tmp_path)
        deadline = time.monotonic() + 30
        while not staging.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert staging.exists(), "the first build never started"
        msg = one_line_error(cnd("build", "--force", cwd=tmp_path))
        assert msg == f"cnd: error: another `cnd build` of this project is running on this node (pid {first.pid})"
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        first.kill()
        first.wait()
    assert len(list(tmp_path.glob("*.squashfs"))) == 1
    assert not staging.exists()
    assert cnd("-q", "build", "--force", cwd=tmp_path).returncode == 0, "the lock is released"
    assert sorted(p.name for p in mount_base.iterdir()) == [], "a build leaves nothing in the mount base"
