"""init, build, mount/umount, status, activation and errors of a project, end to end."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from condainer import mounts

from .conftest import BACKENDS, backend_param, cnd, force_unmount, mountpoint_of, set_config


def one_line_error(result) -> str:
    """The failure is reported as exactly one error line, last, with no traceback (progress may precede)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in lines if "error" in line.lower()]
    assert errors == [lines[-1]], result.stderr
    assert lines[-1].startswith("cnd: error: ")
    return lines[-1]


def snapshot(*dirs: Path) -> dict:
    """Every path, type, size and mtime under DIRS, plus the mount table: what a dry run must not change."""
    state = {}
    for d in dirs:
        for root, subdirs, files in os.walk(d):
            for name in subdirs + files:
                p = os.path.join(root, name)
                st = os.lstat(p)
                state[p] = (st.st_mode, st.st_size, st.st_mtime_ns)
    # only mounts under DIRS: other tests may mount elsewhere at the same time
    state["mounts"] = sorted(e.mountpoint for e in mounts.mount_table()
                             if any(e.mountpoint.startswith(str(d)) for d in dirs))
    return state


def test_init_writes_config_and_example_and_refuses_twice(tmp_path):
    r = cnd("init", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "condainer.yml").is_file()
    assert "dependencies" in (tmp_path / "environment.yml").read_text()
    text = (tmp_path / "condainer.yml").read_text()
    assert one_line_error(cnd("init", cwd=tmp_path)).endswith("this is a condainer project already")
    assert (tmp_path / "condainer.yml").read_text() == text


def test_init_never_overwrites_environment_yml(tmp_path):
    mine = "name: mine\ndependencies: [python]\n"
    (tmp_path / "environment.yml").write_text(mine)
    assert cnd("init", cwd=tmp_path).returncode == 0
    assert (tmp_path / "environment.yml").read_text() == mine


def test_dry_run_changes_nothing(tmp_path, mount_base):
    (tmp_path / "requirements.txt").write_text("six\n")
    assert cnd("-y", "init", cwd=tmp_path).returncode == 0
    assert not (tmp_path / "condainer.yml").exists()
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base))
    before = snapshot(tmp_path, mount_base)
    for args in (["build"], ["mount"], ["umount"], ["exec", "--", "true"], ["cache"]):
        r = cnd("-y", *args, cwd=tmp_path)
        if args[0] in ("build", "umount"):
            assert r.returncode == 0, r.stderr
            assert "dryrun:" in r.stdout
    assert snapshot(tmp_path, mount_base) == before


def test_build_errors_are_one_line(tmp_path, mount_base):
    assert "condainer.yml" in one_line_error(cnd("build", cwd=tmp_path))
    (tmp_path / "condainer.yml").write_text("uuid: [unclosed\n")
    assert "not valid YAML" in one_line_error(cnd("build", cwd=tmp_path))
    (tmp_path / "condainer.yml").unlink()
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base))
    (tmp_path / "environment.yml").unlink()
    assert "neither" in one_line_error(cnd("build", cwd=tmp_path))
    (tmp_path / "environment.yml").write_text("dependencies: [a\n")
    assert "not valid YAML" in one_line_error(cnd("build", cwd=tmp_path))
    assert "does not exist" in one_line_error(cnd("exec", "--", "true", cwd=tmp_path))


def test_pip_failure_is_one_line_and_leaves_nothing(tmp_path, mount_base):
    (tmp_path / "requirements.txt").write_text("no-such-package-condainer-test==0.0.1\n")
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base))
    msg = one_line_error(cnd("build", cwd=tmp_path))
    assert "pip install" in msg
    assert not list(tmp_path.glob("*.squashfs"))
    assert not mountpoint_of(tmp_path).exists(), "the staging directory must be removed after a failure"


def test_build_refuses_to_overwrite_image_and_foreign_staging(pip_project):
    msg = one_line_error(cnd("build", cwd=pip_project))
    assert "--force" in msg


def test_build_refuses_symlinked_staging_dir(tmp_path, mount_base):
    (tmp_path / "requirements.txt").write_text("six\n")
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base))
    victim = tmp_path / "victim"
    victim.mkdir()
    mountpoint_of(tmp_path).symlink_to(victim)
    assert "symlink" in one_line_error(cnd("build", cwd=tmp_path))
    assert list(victim.iterdir()) == []


@pytest.mark.parametrize("backend", [backend_param(b) for b in BACKENDS])
def test_conda_project_from_local_channel(tmp_path, mount_base, conda_channel, backend):
    (tmp_path / "environment.yml").write_text(
        f"name: demo\nchannels:\n  - {conda_channel.as_uri()}\ndependencies:\n  - hello\n"
        "variables:\n  DEMO_VAR: '42'\n")
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base))
    set_config(tmp_path, backend=backend)  # build, exec and activate all use it
    cnd("build", cwd=tmp_path, check=True)
    mp = mountpoint_of(tmp_path)
    try:
        r = cnd("exec", "--", "sh", "-c",
                'echo "$HELLO_ACTIVE $DEMO_VAR $CONDA_PREFIX"; cat "$CONDA_PREFIX/share/hello/prefix.txt"; hello',
                cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == f"1 42 {mp}"
        assert lines[1] == f"prefix={mp}", "the prefix placeholder must hold the mount path"
        assert lines[2] == f"hello from {mp}/bin/hello"
        script = ('export DEMO_VAR=old\nsource ./activate || exit 11\n'
                  'echo "$HELLO_ACTIVE $DEMO_VAR $CONDA_PREFIX $(command -v hello)"\n'
                  'source ./deactivate || exit 12\necho "${HELLO_ACTIVE:-unset} $DEMO_VAR ${CONDA_PREFIX:-unset}"\n')
        r = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [f"1 42 {mp} {mp}/bin/hello", "unset old unset"]
    finally:
        cnd("umount", cwd=tmp_path)
        force_unmount(mp)


def test_solver_failure_is_one_line(tmp_path, mount_base, conda_channel):
    (tmp_path / "environment.yml").write_text(
        f"channels:\n  - {conda_channel.as_uri()}\ndependencies:\n  - no-such-package\n")
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base))
    msg = one_line_error(cnd("build", cwd=tmp_path))
    assert "no-such-package" in msg
    assert not mountpoint_of(tmp_path).exists()


def test_upstream_condainer_yml_still_works(tmp_path, mount_base):
    uuid = "5f0e1d5e-7b0a-4d2e-9a7c-2b1d8e6f4a10"
    (tmp_path / "condainer.yml").write_text(
        "# Condainer project configuration file\n"
        f"mount_base_directory: {mount_base}\nuuid: {uuid}\nenvironment_yml: environment.yml\n"
        "requirements_txt: requirements.txt\n"
        "installer_url: https://github.com/conda-forge/miniforge/releases/latest/download/Miniforge3-Linux-x86_64.sh\n"
        "conda_exe: mamba-not-installed-here\n")
    (tmp_path / "requirements.txt").write_text("six\n")
    cnd("build", cwd=tmp_path, check=True)
    assert (tmp_path / f"{uuid}.squashfs").is_file()
    r = cnd("exec", "--", "python", "-c", "import six; print(six.__name__)", cwd=tmp_path)
    assert (r.returncode, r.stdout.strip()) == (0, "six"), r.stderr


@pytest.mark.host_mode
def test_mount_status_umount_and_busy(pip_project):
    mp = mountpoint_of(pip_project)
    r = cnd("mount", "-p", cwd=pip_project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(mp)
    status = json.loads(cnd("status", "--json", cwd=pip_project, check=True).stdout)
    assert status["mounted"] is True and status["pinned"] is True
    # an exec ending must leave a pinned mount in place
    cnd("exec", "--", "true", cwd=pip_project, check=True)
    assert mounts.state(mp) == "mounted"
    busy = subprocess.Popen(["sleep", "60"], cwd=mp)
    try:
        assert "busy" in one_line_error(cnd("umount", cwd=pip_project))
        assert mounts.state(mp) == "mounted"
    finally:
        busy.kill()
        busy.wait()
    assert cnd("umount", cwd=pip_project).returncode == 0
    assert mounts.find_mount(mp) is None
    status = json.loads(cnd("status", "--json", cwd=pip_project, check=True).stdout)
    assert status["mounted"] is False


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_activate_and_deactivate_in_a_real_shell(pip_project, shell):
    import shutil

    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    mp = mountpoint_of(pip_project)
    script = (
        'before="$PATH"\n'
        "source ./activate || exit 11\n"
        'python -c "import six, sys; print(sys.prefix)"\n'
        'echo "VENV=$VIRTUAL_ENV"\n'
        "source ./deactivate || exit 12\n"
        '[ "$PATH" = "$before" ] && echo PATH-RESTORED\n'
        'echo "VENV=${VIRTUAL_ENV:-unset}"\n'
    )
    # a venv active before: deactivate must give it back (and the test must not depend on the caller's)
    env = dict(os.environ, VIRTUAL_ENV="/some/venv/before")
    r = subprocess.run([shell, "-c", script], cwd=pip_project, capture_output=True, text=True, timeout=120, env=env)
    try:
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [str(mp), f"VENV={mp}", "PATH-RESTORED", "VENV=/some/venv/before"]
    finally:
        cnd("umount", cwd=pip_project)
