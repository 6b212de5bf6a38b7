"""Two `cnd build --locked` of one project on one machine give byte-identical images, with no
environment variable set by the user (the lock's source_date_epoch reaches installers and packer)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

from .conftest import cnd, set_config
from .test_lock import FAKE, environ, image_of


def _locked_builds_twice(project) -> tuple[str, str, dict]:
    r = cnd("lock", cwd=project, env=environ())
    assert r.returncode == 0, r.stderr
    digests = []
    for _ in range(2):
        r = cnd("-q", "build", "--locked", "--force", "--backend", "python", cwd=project, env=environ())
        assert r.returncode == 0, r.stderr
        digests.append(hashlib.sha256(image_of(project).read_bytes()).hexdigest())
    return digests[0], digests[1], json.loads((project / "condainer.lock").read_text())


def _times(image) -> set[str]:
    """The distinct modification times in IMAGE's listing (unsquashfs -lls: date and time columns)."""
    out = subprocess.run(["unsquashfs", "-lls", str(image)], capture_output=True, text=True, check=True).stdout
    return {" ".join(line.split()[3:5]) for line in out.splitlines() if line[:1] in "-dlcbps"}


def test_pip_project_rebuilds_byte_identical(tmp_path, mount_base):
    (tmp_path / "requirements.txt").write_text("six\n")
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base))
    first, second, lock = _locked_builds_twice(tmp_path)
    assert first == second
    info = json.loads(cnd("image", "info", "--json", str(image_of(tmp_path)), check=True).stdout)
    assert info["mkfs_time"] == lock["source_date_epoch"]
    assert len(_times(image_of(tmp_path))) == 1, "every file carries the lock's time"
    # pip compiled with hash-checked .pyc (flags 3 = checked hash), not the source's mtime
    v = sys.version_info
    pyc = subprocess.run(["unsquashfs", "-cat", str(image_of(tmp_path)),
                          f"lib/python{v.major}.{v.minor}/site-packages/__pycache__/six.cpython-{v.major}{v.minor}.pyc"],
                         capture_output=True)
    assert pyc.returncode == 0, pyc.stderr
    assert int.from_bytes(pyc.stdout[4:8], "little") == 3
    # the check can fail: the same packages under another lock time give another image
    lock["source_date_epoch"] -= 3600
    (tmp_path / "condainer.lock").write_text(json.dumps(lock))
    assert cnd("-q", "build", "--locked", "--force", "--backend", "python", cwd=tmp_path, env=environ()).returncode == 0
    assert hashlib.sha256(image_of(tmp_path).read_bytes()).hexdigest() != first


def test_conda_project_rebuilds_byte_identical(tmp_path, mount_base, conda_channel):
    (tmp_path / "environment.yml").write_text(
        f"name: demo\nchannels:\n  - {conda_channel.as_uri()}\ndependencies:\n  - hello\n"
        "variables:\n  DEMO_VAR: '42'\n")
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base))
    first, second, lock = _locked_builds_twice(tmp_path)
    assert first == second
    info = json.loads(cnd("image", "info", "--json", str(image_of(tmp_path)), check=True).stdout)
    assert info["mkfs_time"] == lock["source_date_epoch"]



def test_conda_frontend_rebuilds_byte_identical(tmp_path, mount_base, conda_channel):
    """Through micromamba (the fake, which logs each transaction with the wall clock and its command
    line in conda-meta/history, as the real ones do)."""
    (tmp_path / "environment.yml").write_text(
        f"name: demo\nchannels:\n  - {conda_channel.as_uri()}\ndependencies:\n  - hello\n")
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base), conda_exe="micromamba")
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    shutil.copy(FAKE, fakebin / "micromamba")
    os.chmod(fakebin / "micromamba", 0o755)
    path = os.pathsep.join([str(fakebin), os.path.dirname(sys.executable), os.environ["PATH"]])
    assert cnd("-q", "lock", cwd=tmp_path, env=environ(PATH=path)).returncode == 0
    digests = []
    for _ in range(2):
        time.sleep(1.1)  # the history's clock would tick between the builds
        r = cnd("-q", "build", "--locked", "--force", "--backend", "python", cwd=tmp_path, env=environ(PATH=path))
        assert r.returncode == 0, r.stderr
        digests.append(hashlib.sha256(image_of(tmp_path).read_bytes()).hexdigest())
    assert digests[0] == digests[1]
