"""condainer.lock: what it records for pip and conda projects, its copy in the image, `cnd lock`,
`cnd build --locked` refusing changed environment files, and a lock used by another builder."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from .conftest import cnd, mountpoint_of, set_config
from .test_project import one_line_error

FAKE = Path(__file__).with_name("fake_conda.py")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def image_of(project: Path) -> Path:
    [image] = project.glob("*.squashfs")
    return image


def lock_in_image(image: Path) -> bytes:
    """The lock inside IMAGE, read with our own reader (not the code under test's choice)."""
    from condainer.fs.reader import SquashfsReader

    with SquashfsReader(image) as reader:
        node = reader.resolve("/.condainer/condainer.lock")
        assert node is not None, "the image holds no lock"
        return reader.read(node, 0, node.size)


def environ(**extra: str) -> dict[str, str]:
    """The caller's environment without SOURCE_DATE_EPOCH: builds must not need the user to set it."""
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env.update(extra)
    return env


@pytest.fixture
def conda_project(tmp_path, mount_base, conda_channel) -> Path:
    project = tmp_path / "conda"
    project.mkdir()
    (project / "environment.yml").write_text(
        f"name: demo\nchannels:\n  - {conda_channel.as_uri()}\ndependencies:\n  - hello\n")
    cnd("init", cwd=project, check=True)
    set_config(project, mount_base_directory=str(mount_base))
    return project


@pytest.fixture
def pip_only_project(tmp_path, mount_base) -> Path:
    project = tmp_path / "pip"
    project.mkdir()
    (project / "requirements.txt").write_text("six\n")
    cnd("init", cwd=project, check=True)
    set_config(project, mount_base_directory=str(mount_base))
    return project


def test_pip_project_lock(pip_only_project):
    project = pip_only_project
    r = cnd("build", "--backend", "python", cwd=project, env=environ())
    assert r.returncode == 0, r.stderr
    data = (project / "condainer.lock").read_bytes()
    lock = json.loads(data)
    assert lock["platform"] == "linux-64" if platform.machine() == "x86_64" else lock["platform"]
    assert lock["sources"] == {"requirements.txt": sha256(project / "requirements.txt")}
    assert lock["conda"] == [] and lock["virtual_packages"] == []
    assert lock["host_python"] == {"executable": getattr(sys, "_base_executable", sys.executable),
                                   "version": platform.python_version()}
    [six] = lock["pip"]
    assert six["name"] == "six" and six["version"].count(".") >= 1 and len(six["sha256"]) == 64
    if six["url"].startswith("file://"):  # the local index here: the hash is the archive's
        assert sha256(Path(urlparse(six["url"]).path)) == six["sha256"]
    assert isinstance(lock["source_date_epoch"], int)
    image = image_of(project)
    assert lock_in_image(image) == data, "the image holds the project's lock, byte for byte"
    # pip's reports (paths, times) are not left in the image
    listing = subprocess.run(["unsquashfs", "-l", str(image)], capture_output=True, text=True).stdout
    assert "pip-report" not in listing
    status = cnd("status", "--json", cwd=project, check=True)
    assert json.loads(status.stdout)["lock"]["matches_project"] is True
    info = json.loads(cnd("image", "info", "--json", str(image), check=True).stdout)
    assert info["lock"].startswith("0 conda + 1 pip packages") and hashlib.sha256(data).hexdigest() in info["lock"]


def test_conda_project_lock_and_locked_rebuild(conda_project, conda_channel):
    project = conda_project
    r = cnd("build", "--backend", "python", cwd=project, env=environ())
    assert r.returncode == 0, r.stderr
    solving = next(line for line in r.stderr.splitlines() if line.startswith("solving for: "))
    lock = json.loads((project / "condainer.lock").read_text())
    assert [(p["name"], p["version"], p["build"]) for p in lock["conda"]] == [("greet", "1.0", "0"), ("hello", "1.0", "0")]
    for p in lock["conda"]:
        archive = conda_channel / "noarch" / f"{p['name']}-1.0-0.tar.bz2"
        assert p["url"] == archive.as_uri() and p["sha256"] == sha256(archive)
    assert lock["pip"] == [] and lock["host_python"] is None
    names = [v["name"] for v in lock["virtual_packages"]]
    assert "__unix" in names and all(n in solving for n in names)
    assert lock["sources"] == {"environment.yml": sha256(project / "environment.yml")}
    # --locked installs it without a solve and stores the same lock
    r = cnd("build", "--locked", "--force", "--backend", "python", cwd=project, env=environ())
    assert r.returncode == 0, r.stderr
    assert "no solve" in r.stderr and "solving for" not in r.stderr
    assert lock_in_image(image_of(project)) == (project / "condainer.lock").read_bytes()
    assert "matches condainer.lock" in cnd("status", cwd=project, check=True).stdout


def test_locked_refuses_changed_environment_in_one_line(conda_project):
    project = conda_project
    msg = one_line_error(cnd("build", "--locked", cwd=project))
    assert "condainer.lock not found" in msg and "cnd lock" in msg
    r = cnd("lock", cwd=project, env=environ())
    assert r.returncode == 0, r.stderr
    assert not list(project.glob("*.squashfs")) and not mountpoint_of(project).exists()
    before = (project / "condainer.lock").read_bytes()
    with open(project / "environment.yml", "a") as fh:
        fh.write("  - greet\n")
    msg = one_line_error(cnd("build", "--locked", cwd=project))
    assert msg == ("cnd: error: environment.yml changed since condainer.lock was written: "
                   "run `cnd lock` to update it (or build without --locked)")
    assert (project / "condainer.lock").read_bytes() == before
    assert not list(project.glob("*.squashfs")) and not mountpoint_of(project).exists()
    (project / "requirements.txt").write_text("six\n")
    msg = one_line_error(cnd("build", "--locked", cwd=project))
    assert "requirements.txt is new" in msg


def test_status_says_when_image_and_project_lock_differ(conda_project):
    project = conda_project
    assert cnd("-q", "build", "--backend", "python", cwd=project, env=environ()).returncode == 0
    assert "matches condainer.lock" in cnd("status", cwd=project, check=True).stdout
    with open(project / "environment.yml", "a") as fh:
        fh.write("# edited\n")
    assert cnd("-q", "lock", cwd=project, env=environ()).returncode == 0
    assert "differs from condainer.lock" in cnd("status", cwd=project, check=True).stdout
    (project / "condainer.lock").unlink()
    assert "the project has no condainer.lock" in cnd("status", cwd=project, check=True).stdout


@pytest.fixture
def fake_micromamba(tmp_path) -> Path:
    d = tmp_path / "fakebin"
    d.mkdir()
    shutil.copy(FAKE, d / "micromamba")
    os.chmod(d / "micromamba", 0o755)
    return d


def test_py_rattler_lock_installed_by_a_conda_frontend(conda_project, fake_micromamba, tmp_path):
    """A lock solved by the embedded builder, installed by micromamba (the fake) from its @EXPLICIT
    list with no solve: the frontend gets exactly the lock's URLs and checksums."""
    project = conda_project
    assert cnd("-q", "lock", cwd=project, env=environ()).returncode == 0
    lock_bytes = (project / "condainer.lock").read_bytes()
    lock = json.loads(lock_bytes)
    set_config(project, conda_exe="micromamba")
    log = tmp_path / "calls.jsonl"
    path = os.pathsep.join([str(fake_micromamba), os.path.dirname(sys.executable), os.environ["PATH"]])
    r = cnd("build", "--locked", "--backend", "python", cwd=project, env=environ(PATH=path, FAKE_CONDA_LOG=str(log)))
    assert r.returncode == 0, r.stderr
    [call] = [json.loads(line) for line in log.read_text().splitlines()]
    assert call["args"][:2] == ["install", "--yes"]
    assert (project / "condainer.lock").read_bytes() == lock_bytes, "a locked build does not rewrite the lock"
    assert lock_in_image(image_of(project)) == lock_bytes
    # what the frontend installed, read back from the image: the lock's packages, from the lock's URLs
    from condainer.fs.reader import SquashfsReader

    with SquashfsReader(image_of(project)) as reader:
        meta = reader.resolve("/conda-meta")
        records = {e.name.decode(): json.loads(reader.read(reader.inode(e.ref), 0, reader.inode(e.ref).size))
                   for e in reader.listdir(meta) if e.name.endswith(b".json")}
    assert sorted((rec["url"], rec["sha256"]) for rec in records.values()) == \
        sorted((p["url"], p["sha256"]) for p in lock["conda"])


def test_a_lock_its_channel_does_not_match_fails_in_one_line(conda_project):
    project = conda_project
    assert cnd("-q", "lock", cwd=project, env=environ()).returncode == 0
    lock = json.loads((project / "condainer.lock").read_text())
    lock["conda"][0]["sha256"] = "0" * 64  # a lock the channel's package does not match
    (project / "condainer.lock").write_text(json.dumps(lock))
    msg = one_line_error(cnd("build", "--locked", "--backend", "python", cwd=project, env=environ()))
    assert "sha256" in msg and "condainer.lock" in msg
    assert not list(project.glob("*.squashfs"))
