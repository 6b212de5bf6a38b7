"""Who may read what through our mount: the same answers as the kernel's squashfs, for another user.

A default mount (no allow_other) is closed to every other user, as squashfuse's is; with
--allow-other the image's modes decide, checked by the kernel (default_permissions), for reads,
listings, path walks and access(2).  The daemon's own access handler, used only when
default_permissions is off, must give the kernel's answers too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from condainer.fs.fuse.policy import caller_groups, permits
from tests.helpers.images import mksquashfs
from tests.helpers.mounts import IS_ROOT, fuse_usable, have, kernel_mount, unmount

NOBODY = 65534
EXTRA_GROUP = 4242  # a supplementary group of the probing process, not its primary one

# path -> (mode, uid, gid); directories end in "/"
ENTRIES = {
    "r600": (0o600, 0, 0),
    "g640": (0o640, 0, NOBODY),
    "o604": (0o604, 0, 0),
    "own400": (0o400, NOBODY, 0),
    "own040": (0o040, NOBODY, NOBODY),  # the owner class applies, not the group's bits
    "supp640": (0o640, 0, EXTRA_GROUP),
    "exe755": (0o755, 0, 0),
    "exe700": (0o700, 0, 0),
    "noexe644": (0o644, 0, 0),
    "d700/": (0o700, 0, 0),
    "d711/": (0o711, 0, 0),
    "d755/": (0o755, 0, 0),
    "d644/": (0o644, 0, 0),
}

PROBE = r"""
import json, os, sys
root = sys.argv[1]
out = {}
for rel in sys.argv[2:]:
    p = os.path.join(root, rel)
    r = {m: os.access(p, getattr(os, m)) for m in ("R_OK", "W_OK", "X_OK")}
    for what, op in (("stat", os.stat), ("read", None), ("chdir", os.chdir)):
        try:
            if op is not None:
                op(p)
            elif os.path.isdir(p):
                os.listdir(p)
            else:
                open(p, "rb").read()
            r[what] = "ok"
        except OSError as e:
            r[what] = e.errno
    out[rel] = r
print(json.dumps(out))
"""

pytestmark = [
    pytest.mark.skipif(not IS_ROOT, reason="needs root: files owned by other users, setuid probes"),
    pytest.mark.skipif(not (fuse_usable() and have("mksquashfs")), reason="needs /dev/fuse and mksquashfs"),
]


def _paths() -> list[str]:
    out = []
    for rel in ENTRIES:
        out.append(rel.rstrip("/"))
        if rel.endswith("/"):
            out.append(rel + "inner")
    return out


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    base = tmp_path_factory.mktemp("perm")
    src = base / "src"
    src.mkdir()
    for rel, (mode, uid, gid) in ENTRIES.items():
        p = src / rel.rstrip("/")
        if rel.endswith("/"):
            p.mkdir()
            (p / "inner").write_bytes(b"inside\n")
            os.chmod(p / "inner", 0o644)
        else:
            p.write_bytes(b"#!/bin/sh\necho hi\n")
        os.chown(p, uid, gid)
        os.chmod(p, mode)
    return mksquashfs(str(src), str(base / "perm.sqfs"), "zstd")


@pytest.fixture
def shared_dir():
    """Mount points other users can reach (pytest's tmp dirs are 0700)."""
    d = tempfile.mkdtemp(prefix="condainer-perm-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        for name in os.listdir(d):
            unmount(os.path.join(d, name))
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def ours(image: str, mnt: str, *, allow_other: bool = False, log_path: str | None = None, backend: str = "python"):
    from condainer.backends.mount import fuse_log_path, mount
    from condainer.fs.fuse import mount_image

    os.makedirs(mnt, exist_ok=True)
    os.chmod(mnt, 0o755)
    try:
        if backend == "python":
            mount_image(image, mnt, allow_other=allow_other, log_path=log_path or fuse_log_path())
        else:
            mount(image, mnt, backend=backend, allow_other=allow_other)
        yield mnt
    finally:
        unmount(mnt)


def probe(root: str, paths: list[str], *, as_nobody: bool) -> dict:
    kw = {"user": NOBODY, "group": NOBODY, "extra_groups": [EXTRA_GROUP]} if as_nobody else {}
    out = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", PROBE, root, *paths],
        check=True,
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
        **kw,
    )
    return json.loads(out.stdout)


def test_permits_follows_the_kernel_rule():
    groups = {NOBODY, EXTRA_GROUP}
    assert permits(0o600, 0, 0, os.R_OK, NOBODY, groups) is False
    assert permits(0o604, 0, 0, os.R_OK, NOBODY, groups) is True
    assert permits(0o640, 0, EXTRA_GROUP, os.R_OK, NOBODY, groups) is True
    assert permits(0o047, NOBODY, NOBODY, os.R_OK, NOBODY, groups) is False  # owner class only
    assert permits(0o500, NOBODY, 0, os.R_OK | os.X_OK, NOBODY, groups) is True
    assert permits(0o400, NOBODY, 0, os.R_OK | os.X_OK, NOBODY, groups) is False
    # root reads anything, executes a file only if some execute bit is set, searches any directory
    assert permits(0o000, 5, 5, os.R_OK, 0, {0}) is True
    assert permits(0o644, 5, 5, os.X_OK, 0, {0}) is False
    assert permits(0o001, 5, 5, os.X_OK, 0, {0}) is True
    assert permits(stat.S_IFDIR | 0o000, 5, 5, os.X_OK, 0, {0}) is True
    assert permits(0o000, 5, 5, os.F_OK, NOBODY, groups) is True


def test_caller_groups_lists_supplementary_groups():
    assert caller_groups(os.getpid(), os.getgid()) == {os.getgid(), *os.getgroups()}
    assert caller_groups(2**22 + 12345, 77) == {77}  # no such process: primary group only


def test_default_mount_is_closed_to_other_users(image, shared_dir):
    mnt = os.path.join(shared_dir, "ours")
    with ours(image, mnt):
        mine = probe(mnt, ["o604"], as_nobody=False)
        theirs = probe(mnt, ["o604"], as_nobody=True)
    assert mine["o604"]["read"] == "ok"
    assert theirs["o604"]["stat"] == 13 and theirs["o604"]["read"] == 13  # EACCES


@pytest.mark.parametrize("backend", ["python", pytest.param("native", marks=pytest.mark.skipif(
    not have("squashfuse_ll") and not have("squashfuse"), reason="squashfuse not installed"))])
def test_allow_other_gives_other_users_the_kernels_answers(image, shared_dir, backend):
    paths = _paths()
    with kernel_mount(image, os.path.join(shared_dir, "kernel")) as kmnt:
        expected = probe(kmnt, paths, as_nobody=True)
    with ours(image, os.path.join(shared_dir, "ours"), allow_other=True, backend=backend) as mnt:
        got = probe(mnt, paths, as_nobody=True)
    # the table means something: the kernel lets nobody read some entries and not others
    assert expected["o604"]["read"] == "ok" and expected["r600"]["read"] == 13
    assert expected["supp640"]["read"] == "ok" and expected["d700/inner"]["stat"] == 13
    assert got == expected


@pytest.mark.parametrize("api", ["low", "high"])
def test_access_handler_answers_like_the_kernel(image, shared_dir, tmp_path, monkeypatch, api):
    """Without default_permissions access(2) and chdir reach the daemon: same answers for root."""
    import re
    import time

    monkeypatch.setenv("CONDAINER_FUSE_DEFAULT_PERMISSIONS", "0")
    monkeypatch.setenv("CONDAINER_FUSE_API", api)
    monkeypatch.setenv("CONDAINER_FUSE_STATS", "1")
    paths = _paths()
    with kernel_mount(image, os.path.join(shared_dir, "kernel")) as kmnt:
        expected = probe(kmnt, paths, as_nobody=False)
    log = tmp_path / "fuse.log"
    with ours(image, os.path.join(shared_dir, "ours"), log_path=str(log)) as mnt:
        got = probe(mnt, paths, as_nobody=False)
    assert expected["noexe644"]["X_OK"] is False and expected["exe700"]["X_OK"] is True
    assert {k: {m: v[m] for m in ("R_OK", "W_OK", "X_OK", "chdir")} for k, v in got.items()} == {
        k: {m: v[m] for m in ("R_OK", "W_OK", "X_OK", "chdir")} for k, v in expected.items()
    }
    counts: dict[str, int] = {}
    for _ in range(50):  # the daemon writes its request counts when it exits
        lines = [line for line in log.read_text().splitlines() if "requests:" in line]
        if lines:
            counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1].split("requests:")[1])}
            break
        time.sleep(0.1)
    assert counts.get("access", 0) >= len(paths), counts
