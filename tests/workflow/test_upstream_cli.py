"""Upstream Condainer's command line: its CI sequence, `build --steps`, `mount -p`, `init -n`."""

from __future__ import annotations

import os

import pytest

from .conftest import cnd, force_unmount, mountpoint_of, set_config
from .test_project import one_line_error

# Upstream's CI, verbatim, in a fresh directory holding an empty Miniforge installer.
UPSTREAM_CI = [
    ["--help"],
    ["--dryrun", "init"],
    ["init"],
    ["--dryrun", "build"],
    ["--dryrun", "build", "--steps", "1,2,3,7"],
    ["--dryrun", "mount"],
    ["--dryrun", "umount"],
    ["--dryrun", "exec", "--", "python3"],
    ["--dryrun", "cache"],
]


def test_upstream_ci_sequence_exits_0_at_every_step(tmp_path):
    (tmp_path / "Miniforge3-Linux-x86_64.sh").write_text("")
    for args in UPSTREAM_CI:
        r = cnd(*args, cwd=tmp_path)
        assert r.returncode == 0, f"cnd {' '.join(args)}: {r.stderr}"
        assert "Traceback" not in r.stderr
    mp = mountpoint_of(tmp_path)
    assert not mp.exists(), "a dry run created the staging directory"
    assert not list(tmp_path.glob("*.squashfs")) and not (tmp_path / "condainer.lock").exists()
    # before any image exists, the dry runs of mount and exec say so, as a warning
    r = cnd("--dryrun", "exec", "--", "python3", cwd=tmp_path)
    assert "cnd: warning: image" in r.stderr and "does not exist" in r.stderr
    assert f"dryrun: run python3 with {mp}/bin first on PATH" in r.stdout


def test_dry_run_lists_only_the_steps_asked_for(tmp_path):
    (tmp_path / "requirements.txt").write_text("six\n")
    cnd("init", cwd=tmp_path, check=True)
    r = cnd("--dryrun", "build", "--steps", "1,2,3,7", cwd=tmp_path, check=True)
    steps = [line.split(":")[1].strip() for line in r.stdout.splitlines() if line.startswith("dryrun: step")]
    assert steps == ["step 1", "step 2", "step 3", "step 7"]
    r = cnd("--dryrun", "build", "-s", "5", cwd=tmp_path, check=True)
    assert "keep" in r.stdout.splitlines()[-1]


@pytest.mark.parametrize("bad", ["8", "1,x", "0", ""])
def test_bad_steps_are_one_line(tmp_path, bad):
    cnd("init", cwd=tmp_path, check=True)
    msg = one_line_error(cnd("build", "--steps", bad, cwd=tmp_path))
    assert "--steps" in msg and "not a step" in msg


def test_steps_without_cleanup_keep_the_staging_directory_then_pack_it(tmp_path, mount_base, conda_channel):
    (tmp_path / "environment.yml").write_text(
        f"name: demo\nchannels:\n  - {conda_channel.as_uri()}\ndependencies:\n  - hello\n")
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base))
    mp = mountpoint_of(tmp_path)
    try:
        r = cnd("build", "--steps", "1,2,3,4", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert (mp / "bin" / "hello").exists() and (mp / ".condainer" / "condainer.lock").exists()
        assert "kept the staging directory" in r.stderr
        assert not list(tmp_path.glob("*.squashfs")) and (tmp_path / "condainer.lock").exists()
        # a later run packs what the earlier one installed, and cleans up
        r = cnd("build", "--steps", "5,6,7", "--backend", "python", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert not mp.exists() and list(tmp_path.glob("*.squashfs")) and (tmp_path / "activate").exists()
        r = cnd("exec", "--", "hello", cwd=tmp_path)
        assert r.returncode == 0 and r.stdout.strip() == f"hello from {mp}/bin/hello", r.stderr
        assert "matches condainer.lock" in cnd("status", cwd=tmp_path, check=True).stdout
    finally:
        cnd("umount", cwd=tmp_path)
        force_unmount(mp)


def test_packing_steps_without_a_staging_directory_are_one_line(tmp_path, mount_base):
    (tmp_path / "requirements.txt").write_text("six\n")
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base))
    msg = one_line_error(cnd("build", "--steps", "5", cwd=tmp_path))
    assert "is missing or empty: run steps 1 and 2 first" in msg


def test_non_conda_application(tmp_path, mount_base):
    """`init -n`: the staging directory is made and printed; the user puts an application there;
    `cnd build` packs it as it is (no conda, no lock); exec finds its bin/; mount -p prints the
    mount point."""
    base = str(mount_base)
    r = cnd("init", "-n", cwd=tmp_path, env=dict(os.environ, TMPDIR=base))
    assert r.returncode == 0, r.stderr
    set_config(tmp_path, mount_base_directory=base)
    text = (tmp_path / "condainer.yml").read_text()
    assert "non_conda_application: true" in text and not (tmp_path / "environment.yml").exists()
    staged = r.stdout.strip()
    # init made it under the default base (/tmp); our tests move the base, so move the tree too
    os.rmdir(staged)
    mp = mountpoint_of(tmp_path)
    (mp / "bin").mkdir(parents=True, mode=0o700)
    os.chmod(mp, 0o700)
    (mp / "bin" / "app").write_text("#!/bin/sh\necho app says hi\n")
    os.chmod(mp / "bin" / "app", 0o755)
    try:
        r = cnd("build", "--backend", "python", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert not mp.exists() and not (tmp_path / "condainer.lock").exists()
        r = cnd("exec", "--", "app", cwd=tmp_path)
        assert (r.returncode, r.stdout.strip()) == (0, "app says hi"), r.stderr
        r = cnd("-q", "mount", "-p", cwd=tmp_path)
        assert (r.returncode, r.stdout.strip()) == (0, str(mp)), r.stderr
        assert (mp / "bin" / "app").exists()
    finally:
        cnd("umount", cwd=tmp_path)
        force_unmount(mp)
    msg = one_line_error(cnd("build", "--locked", "--force", cwd=tmp_path))
    assert "non_conda_application" in msg
    mp.mkdir(mode=0o700, exist_ok=True)  # the empty mount point stays after umount
    (mp / "kept").write_text("the application\n")
    msg = one_line_error(cnd("lock", cwd=tmp_path))
    assert "non_conda_application" in msg and (mp / "kept").exists()
    (mp / "kept").unlink()
    mp.rmdir()
