"""condainer.yml is validated when it is loaded, naming the file and the key, before anything is built."""

from __future__ import annotations

import pytest

from .conftest import cnd
from .test_project import one_line_error

UUID = "11111111-2222-3333-4444-555555555555"


def _project(tmp_path, mount_base, extra: str):
    (tmp_path / "condainer.yml").write_text(f"mount_base_directory: {mount_base}\nuuid: {UUID}\n{extra}\n")
    (tmp_path / "requirements.txt").write_text("six\n")


@pytest.mark.parametrize(("extra", "says"), [
    ("block_size: 1000", "block_size: 1000 is not a power of two from 4096 (4K) to 1048576 (1M)"),
    ("block_size: 2097152", "block_size: 2097152 is not a power of two"),
    ("compression_level: 99", "compression_level: zstd level must be 1..22, not 99"),
    ("compression: gzip\ncompression_level: 10", "compression_level: gzip level must be 1..9, not 10"),
    ("compression: xz\ncompression_level: 5", "compression_level: xz takes no level"),
    (f"uuid: urn:uuid:{UUID}", "uuid: 'urn:uuid:"),
    ("launchers: some", "launchers: must be all, none or a list of names"),
    ("launchers: [python, ../x]", "launchers: '../x' is not a file name in bin/"),
    ("launchers: [python, 3]", "launchers: 3 is not a file name in bin/"),
])
def test_bad_values_fail_at_load_naming_the_key(tmp_path, mount_base, extra, says):
    _project(tmp_path, mount_base, extra)
    msg = one_line_error(cnd("-y", "build", cwd=tmp_path))
    assert msg.startswith(f"cnd: error: {tmp_path / 'condainer.yml'}: ") and says in msg


def test_unknown_key_warns_with_the_closest_known_key_and_goes_on(tmp_path, mount_base):
    _project(tmp_path, mount_base, "compresion: xz")
    r = cnd("-y", "build", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        f"cnd: warning: {tmp_path / 'condainer.yml'}: unknown key compresion (did you mean compression?); ignored"]


def test_mount_base_directory_expands_home_and_variables(tmp_path, mount_base, monkeypatch):
    (tmp_path / "condainer.yml").write_text(f"mount_base_directory: $MY_BASE/x\nuuid: {UUID}\n")
    (tmp_path / "requirements.txt").write_text("six\n")
    monkeypatch.delenv("MY_BASE", raising=False)
    assert one_line_error(cnd("-y", "build", cwd=tmp_path)).endswith("mount_base_directory: $MY_BASE is not set")
    monkeypatch.setenv("MY_BASE", str(mount_base))
    r = cnd("-y", "build", cwd=tmp_path)
    assert r.returncode == 0 and f"{mount_base}/x/condainer-{UUID}" in r.stdout, r.stderr
    monkeypatch.setenv("HOME", str(mount_base))
    (tmp_path / "condainer.yml").write_text(f"mount_base_directory: ~/y\nuuid: {UUID}\n")
    r = cnd("-y", "build", cwd=tmp_path)
    assert r.returncode == 0 and f"{mount_base}/y/condainer-{UUID}" in r.stdout, r.stderr


def test_too_many_processors_fail_before_the_install(tmp_path, mount_base):
    """The processors cap is met before anything is installed (it used to be met at the pack step)."""
    _project(tmp_path, mount_base, "processors: 100000")
    r = cnd("build", cwd=tmp_path)
    msg = one_line_error(r)
    assert "processors" in msg and "100000" in msg
    assert "[1/3]" not in r.stderr  # nothing was installed
