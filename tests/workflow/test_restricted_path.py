"""A job whose PATH holds only a venv's bin (no fusermount3, no umount on it): the mount cnd makes
must still come down when the last exec ends (it used to stay: "no unmount tool found")."""

from __future__ import annotations

import os
import sys

import pytest

from condainer import mounts

from .conftest import backend_param, cnd, force_unmount, mountpoint_of


@pytest.mark.parametrize("backend", [backend_param("python")])
def test_exec_unmounts_with_a_bare_path(pip_projects, backend):
    project = pip_projects(backend)
    mp = mountpoint_of(project)
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))
    try:
        r = cnd("exec", "--backend", backend, "--", "python", "-c", "import six", cwd=project, env=env)
        assert r.returncode == 0, r.stderr
        assert mounts.find_mount(mp) is None, r.stderr
    finally:
        force_unmount(mp)
