"""`cnd umount` on a node where the project was never used (its mount base not even created yet)
says "not mounted" and creates nothing (it failed: "cannot create state directory")."""

from __future__ import annotations

from .conftest import cnd, set_config


def test_umount_where_never_mounted(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    (project / "requirements.txt").write_text("six\n")
    cnd("init", cwd=project, check=True)
    base = tmp_path / "not-yet"
    set_config(project, mount_base_directory=str(base))
    r = cnd("umount", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "is not mounted" in r.stderr + r.stdout
    assert not base.exists()
