"""A node's /tmp keeps nothing of ours once the image is unmounted: no empty mount point, no state
directory; and what is live, or not ours, is never removed."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from condainer import mounts

from .conftest import BACKENDS, backend_param, cnd, mountpoint_of

pytestmark = [pytest.mark.parametrize("pip_project", [backend_param(b) for b in BACKENDS], indirect=True),
              pytest.mark.host_mode]  # the per-node state of host mounts


def ours_in_base(project) -> list[str]:
    """What the mount base holds of PROJECT: its mount point and state directories."""
    mp = mountpoint_of(project)
    uuid = mp.name.removeprefix("condainer-")
    return sorted(n for n in os.listdir(mp.parent) if n == mp.name or n.startswith(f".condainer-{uuid}-"))


def test_the_last_exec_leaves_the_mount_base_clean(pip_project):
    r = cnd("exec", "--", "true", cwd=pip_project)
    assert r.returncode == 0, r.stderr
    assert ours_in_base(pip_project) == []


def test_mount_then_umount_leaves_the_mount_base_clean(pip_project):
    cnd("mount", cwd=pip_project, check=True)
    assert len(ours_in_base(pip_project)) == 2, "mounted: the mount point and the state directory"
    cnd("umount", cwd=pip_project, check=True)
    assert ours_in_base(pip_project) == []


def test_a_running_exec_keeps_its_state_and_the_last_one_cleans(pip_project):
    mp = mountpoint_of(pip_project)
    long = subprocess.Popen([sys.executable, "-m", "condainer", "exec", "--", "python", "-c",
                             "import time; print('up', flush=True); time.sleep(3)"],
                            cwd=pip_project, stdout=subprocess.PIPE, text=True)
    try:
        assert long.stdout.readline().strip() == "up"
        r = cnd("exec", "--", "true", cwd=pip_project)
        assert r.returncode == 0, r.stderr
        assert mounts.state(mp) == "mounted" and len(ours_in_base(pip_project)) == 2
    finally:
        assert long.wait(timeout=60) == 0
    assert ours_in_base(pip_project) == []


def test_waves_of_execs_racing_the_clean_up_all_succeed(pip_project):
    """Execs that start while the last one out removes the state directory must not lose the lock."""
    def one(_):
        return cnd("exec", "--", "true", cwd=pip_project, timeout=120)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(24)))
    assert [r.returncode for r in results] == [0] * 24, [r.stderr for r in results if r.returncode]
    assert ours_in_base(pip_project) == []


def test_a_failed_mount_leaves_nothing(pip_project, tmp_path):
    image = next(pip_project.glob("*.squashfs"))
    moved = tmp_path / image.name
    image.rename(moved)
    try:
        r = cnd("exec", "--", "true", cwd=pip_project)
        assert r.returncode == 1 and "does not exist" in r.stderr
        assert ours_in_base(pip_project) == []
    finally:
        moved.rename(image)


def test_a_damaged_image_is_one_line_and_leaves_nothing(pip_project, tmp_path):
    """A truncated image passes the superblock check; the mount itself must fail in one line."""
    image = next(pip_project.glob("*.squashfs"))
    kept = tmp_path / image.name
    image.rename(kept)
    try:
        image.write_bytes(kept.read_bytes()[:4096])
        r = cnd("exec", "--", "true", cwd=pip_project)
        assert r.returncode != 0
        [line] = r.stderr.splitlines()
        assert line.startswith("cnd: error: ") and "Traceback" not in r.stderr
        assert mounts.find_mount(mountpoint_of(pip_project)) is None
        assert ours_in_base(pip_project) == []
    finally:
        image.unlink(missing_ok=True)
        kept.rename(image)
