"""An upstream condainer.yml is read, never rewritten."""

from __future__ import annotations

from .conftest import cnd, force_unmount, mountpoint_of


def test_build_ignores_user_env_name_and_never_rewrites_condainer_yml(tmp_path, mount_base):
    text = (f"# my precious comment\nmount_base_directory: {mount_base}   # node-local\n"
            "uuid: cccccccc-2222-3333-4444-555555555555\nuser_env_name: myenv\n")
    (tmp_path / "condainer.yml").write_text(text)
    (tmp_path / "requirements.txt").write_text("six\n")
    r = cnd("build", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "condainer.yml").read_text() == text
    assert "ignoring user_env_name: myenv of condainer.yml (the environment is built at the mount point)" \
        in r.stderr.splitlines()
    mp = mountpoint_of(tmp_path)
    try:
        r = cnd("exec", "--", "python", "-c", "import six, sys; print(sys.prefix)", cwd=tmp_path)
        assert (r.returncode, r.stdout.strip()) == (0, str(mp)), r.stderr
    finally:
        force_unmount(mp)
    # a failing build leaves it alone too
    (tmp_path / "requirements.txt").write_text("no-such-package-condainer-test==0.0.1\n")
    assert cnd("build", "--force", cwd=tmp_path).returncode != 0
    assert (tmp_path / "condainer.yml").read_text() == text
