"""Inputs that used to end in a Python traceback (or a hang) instead of one `cnd: error:` line."""

from __future__ import annotations

import os

import pytest

from .conftest import cnd, set_config
from .test_project import one_line_error

UUID = "11111111-2222-3333-4444-555555555555"


def test_non_utf8_condainer_yml_is_one_line(tmp_path, mount_base):
    (tmp_path / "condainer.yml").write_bytes(
        f"mount_base_directory: {mount_base}\nuuid: {UUID}\n\xff\n".encode("latin-1"))
    msg = one_line_error(cnd("-y", "build", cwd=tmp_path))
    assert msg.endswith("condainer.yml is not UTF-8 text: byte 0xff on line 3")


def test_non_utf8_environment_yml_is_one_line(tmp_path, mount_base):
    (tmp_path / "condainer.yml").write_text(f"mount_base_directory: {mount_base}\nuuid: {UUID}\n")
    (tmp_path / "environment.yml").write_bytes(b"name: x\n\xff\n")
    msg = one_line_error(cnd("-y", "build", cwd=tmp_path))
    assert msg.endswith("environment.yml is not UTF-8 text: byte 0xff on line 2")


@pytest.mark.parametrize("command", ["check", "info", "mount"])
@pytest.mark.parametrize(("kind", "says"), [
    ("directory", "is a directory, not an image"),
    ("fifo", "is not a regular file"),
    ("missing", "not found"),
])
def test_image_that_is_not_a_file_is_one_line(tmp_path, command, kind, says):
    image = tmp_path / "x.sqfs"
    if kind == "directory":
        image.mkdir()
    elif kind == "fifo":
        os.mkfifo(image)
    mp = tmp_path / "mp"
    mp.mkdir()
    args = ["image", command, str(image)] + ([str(mp)] if command == "mount" else [])
    msg = one_line_error(cnd(*args, timeout=30))  # a FIFO must not hang the reader
    assert msg == f"cnd: error: {image} {says}" + (", not an image" if kind == "fifo" else "")


def test_environment_file_that_is_a_directory_is_one_line(tmp_path, mount_base):
    (tmp_path / "requirements.txt").write_text("six\n")
    cnd("init", "--pip", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base))
    (tmp_path / "environment.yml").mkdir()
    assert one_line_error(cnd("-y", "build", cwd=tmp_path)).endswith("environment.yml is not a regular file")
    (tmp_path / "environment.yml").rmdir()
    (tmp_path / "requirements.txt").unlink()
    (tmp_path / "requirements.txt").mkdir()
    assert one_line_error(cnd("-y", "build", cwd=tmp_path)).endswith("requirements.txt is not a regular file")


def test_dryrun_init_does_not_claim_it_initialized(tmp_path):
    r = cnd("-y", "init", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "initialized" not in r.stdout + r.stderr
    assert r.stdout.startswith(f"dryrun: write {tmp_path / 'condainer.yml'}")
    assert list(tmp_path.iterdir()) == []


def test_quiet_silences_progress_not_the_requested_output(tmp_path, mount_base):
    (tmp_path / "requirements.txt").write_text("six\n")
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base))
    r = cnd("-q", "status", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert str(tmp_path) in r.stdout
    assert '"mounted": false' in cnd("-q", "status", "--json", cwd=tmp_path, check=True).stdout
    assert cnd("-q", "version", check=True).stdout.startswith("condainer ")
    assert cnd("-q", "-y", "build", cwd=tmp_path, check=True).stderr == ""
