"""The Python FUSE mount against the kernel's own squashfs on the same images."""

from __future__ import annotations

import ctypes.util
import errno
import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap

import pytest

from condainer.errors import ImageError, MountError
from tests.helpers.images import mksquashfs
from tests.helpers.mounts import IS_ROOT, fuse_usable, have, kernel_mount, python_mount, unmount
from tests.helpers.snapshots import diff_stat_snapshots, stat_snapshot
from tests.helpers.trees import build_tree

pytestmark = pytest.mark.skipif(
    not (fuse_usable() and have("mksquashfs")), reason="needs /dev/fuse, fusermount3 and mksquashfs"
)
needs_kernel = pytest.mark.skipif(not IS_ROOT, reason="kernel loop mount needs root")

COMPRESSORS = ("zstd", "gzip", "xz")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    src = str(tmp_path_factory.mktemp("reader-src") / "tree")
    build_tree(src)
    return src


@pytest.fixture(scope="module")
def images(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("reader-img")
    return {c: mksquashfs(tree, str(out / f"tree.{c}.sqfs"), c) for c in COMPRESSORS}


@pytest.fixture(scope="module")
def kernel_snapshot(images, tmp_path_factory):
    if not IS_ROOT:
        pytest.skip("kernel loop mount needs root")
    mnt = str(tmp_path_factory.mktemp("kmnt") / "m")
    with kernel_mount(images["zstd"], mnt):
        return stat_snapshot(mnt)


@pytest.fixture
def mnt(tmp_path):
    path = tmp_path / "mnt"
    path.mkdir()
    yield str(path)
    unmount(str(path))


HAVE_LIBFUSE2 = ctypes.util.find_library("fuse") is not None


@needs_kernel
@pytest.mark.parametrize(
    "comp,api",
    [
        ("zstd", "low"),
        ("gzip", "low"),
        ("xz", "low"),
        ("zstd", "high"),
        pytest.param(
            "zstd",
            "libfuse2",
            marks=pytest.mark.skipif(not HAVE_LIBFUSE2, reason="libfuse2 not installed (package libfuse2)"),
        ),
    ],
)
def test_fuse_mount_equals_kernel_mount(comp, api, images, kernel_snapshot, mnt, tmp_path, monkeypatch):
    # mksquashfs output does not depend on the compressor beyond block contents, so one kernel
    # snapshot serves as the reference for every compressor.  "high" is mfusepy's path-based
    # layer over libfuse3; "libfuse2" is that layer over libfuse 2.9, the fallback where only
    # libfuse2 is installed.
    if api == "libfuse2":
        monkeypatch.setenv("FUSE_LIBRARY_NAME", "fuse")
    else:
        monkeypatch.setenv("CONDAINER_FUSE_API", api)
    with python_mount(images[comp], mnt, log_path=str(tmp_path / "fuse.log")):
        if api == "libfuse2":
            daemon = _daemon_of(mnt)
            assert any("libfuse.so.2" in line for line in open(f"/proc/{daemon}/maps")), "not libfuse2"
        ours = stat_snapshot(mnt)
    assert len(ours) > 3000
    assert diff_stat_snapshots(kernel_snapshot, ours) == []


@needs_kernel
def test_random_ranged_reads_equal_kernel(images, mnt, tmp_path):
    kmnt = str(tmp_path / "kmnt")
    rng = random.Random(7)
    names = ["size_1000003", "size_393233", "sparse", "size_131073", "zeros_2blocks", "size_1"]
    with kernel_mount(images["zstd"], kmnt), python_mount(images["zstd"], mnt):
        for name in names:
            size = os.path.getsize(os.path.join(kmnt, name))
            with open(os.path.join(kmnt, name), "rb") as k, open(os.path.join(mnt, name), "rb") as f:
                for _ in range(60):
                    off = rng.randrange(0, size + 10)
                    n = rng.choice([1, 7, 4096, 65536, 131072, 131073, 400000])
                    assert os.pread(f.fileno(), n, off) == os.pread(k.fileno(), n, off), (name, off, n)


READER_SCRIPT = textwrap.dedent("""
    import hashlib, json, os, random, sys
    root, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    files = []
    for d, _, names in os.walk(root):
        files += [os.path.join(d, n) for n in names if os.path.isfile(os.path.join(d, n))
                  and not os.path.islink(os.path.join(d, n))]
    rng.shuffle(files)
    out = {}
    for p in files[:400] + [p for p in files if os.path.getsize(p) > 100000]:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while True:
                chunk = f.read(rng.choice([4096, 65536, 200000]))
                if not chunk:
                    break
                h.update(chunk)
        out[os.path.relpath(p, root)] = h.hexdigest()
    print(json.dumps(out))
""")


def test_eight_concurrent_readers_get_correct_bytes(tree, images, mnt):
    expected = {}
    for d, _, names in os.walk(tree):
        for n in names:
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    expected[os.path.relpath(p, tree)] = hashlib.sha256(f.read()).hexdigest()
    with python_mount(images["zstd"], mnt):
        procs = [
            subprocess.Popen([sys.executable, "-c", READER_SCRIPT, mnt, str(i)], stdout=subprocess.PIPE)
            for i in range(8)
        ]
        results = [p.communicate(timeout=120)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs)
    for raw in results:
        got = json.loads(raw)
        assert len(got) >= 400
        for rel, digest in got.items():
            assert digest == expected[rel], rel


def test_mount_is_read_only_and_answers_errors(images, mnt):
    with python_mount(images["zstd"], mnt):
        with pytest.raises(OSError) as e:
            open(os.path.join(mnt, "size_1"), "r+b")
        assert e.value.errno == errno.EROFS
        for call in (
            lambda: os.mkdir(os.path.join(mnt, "new")),
            lambda: os.unlink(os.path.join(mnt, "size_1")),
            lambda: os.rename(os.path.join(mnt, "size_1"), os.path.join(mnt, "x")),
            lambda: os.symlink("a", os.path.join(mnt, "ln")),
            lambda: os.chmod(os.path.join(mnt, "size_1"), 0o600),
            lambda: os.utime(os.path.join(mnt, "size_1"), (1, 1)),
            lambda: open(os.path.join(mnt, "created"), "wb"),
            lambda: os.setxattr(os.path.join(mnt, "size_1"), "user.x", b"1"),
        ):
            with pytest.raises(OSError) as e:
                call()
            assert e.value.errno == errno.EROFS
        with pytest.raises(FileNotFoundError):
            os.stat(os.path.join(mnt, "no", "such"))
        with pytest.raises(FileNotFoundError):
            os.stat(os.path.join(mnt, "missing"))
        with pytest.raises(OSError) as e:
            os.getxattr(os.path.join(mnt, "xattrs", "file"), "user.missing")
        assert e.value.errno == errno.ENODATA
        assert os.getxattr(os.path.join(mnt, "xattrs", "file"), "user.empty") == b""
        assert os.readlink(os.path.join(mnt, "links", "long_target")) == "x" * 1000
        sv = os.statvfs(mnt)
        assert sv.f_bsize == 128 * 1024 and sv.f_bfree == 0 and sv.f_flag & os.ST_RDONLY
        assert sorted(os.listdir(os.path.join(mnt, "empty_dir"))) == []


def test_mountinfo_names_our_mounts(images, mnt):
    with python_mount(images["zstd"], mnt):
        with open("/proc/self/mountinfo") as f:
            lines = [line.split() for line in f if f" {mnt} " in line]
        assert len(lines) == 1
        fields = lines[0]
        sep = fields.index("-")
        assert fields[sep + 1] == "fuse.condainer"
        assert fields[sep + 2] == images["zstd"]
        assert {"ro", "nosuid", "nodev"} <= set(fields[5].split(","))
        assert "allow_other" not in fields[sep + 3]


def test_mount_refuses_bad_mount_points_and_images(images, mnt, tmp_path):
    from condainer.fs.fuse import mount_image

    img = images["zstd"]
    log = tmp_path / "fuse.log"
    with pytest.raises(MountError, match="does not exist"):
        mount_image(img, tmp_path / "absent", log_path=log)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(MountError, match="not a directory"):
        mount_image(img, tmp_path / "file", log_path=log)
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_bytes(b"")
    with pytest.raises(MountError, match="not empty"):
        mount_image(img, full, log_path=log)
    bad = tmp_path / "bad.sqfs"
    bad.write_bytes(b"not an image" * 100)
    with pytest.raises(ImageError, match="not a squashfs image"):
        mount_image(bad, mnt, log_path=log)
    with pytest.raises(ImageError, match="no such image"):
        mount_image(tmp_path / "nope.sqfs", mnt, log_path=log)
    assert not os.path.ismount(mnt)
    with python_mount(img, mnt):
        with pytest.raises(MountError, match="already mounted"):
            mount_image(img, mnt, log_path=log)


def test_damaged_block_is_eio_with_one_log_line(tree, tmp_path, mnt):
    img = mksquashfs(tree, str(tmp_path / "damaged.sqfs"), "gzip")
    from condainer.fs.reader import SquashfsReader

    with SquashfsReader(img) as r:
        node = r.resolve("/size_1000003")
        words, starts = r._block_index(node)
        pos = starts[3] + 10  # inside the fourth data block (compressed: not raw)
        assert not words[3] & (1 << 24)
    data = bytearray(open(img, "rb").read())
    for i in range(pos, pos + 64):
        data[i] ^= 0x5A
    open(img, "wb").write(bytes(data))
    log = tmp_path / "fuse.log"
    with python_mount(img, mnt, log_path=str(log)):
        target = os.path.join(mnt, "size_1000003")
        for _ in range(3):
            with open(target, "rb") as f:
                assert f.read(BLOCK := 128 * 1024) is not None  # first block is fine
                f.seek(3 * BLOCK)
                with pytest.raises(OSError) as e:
                    f.read(BLOCK)
                assert e.value.errno == errno.EIO
        assert open(os.path.join(mnt, "size_1"), "rb").read(1) is not None  # still serving
    damage = [line for line in log.read_text().splitlines() if "damaged image" in line]
    assert len(damage) == 1, damage
    assert "data block 3" in damage[0]


def test_repeated_listing_and_reads_stay_in_the_kernel(images, mnt, tmp_path, monkeypatch):
    """Zero-message open/opendir and long timeouts: a second walk costs the daemon no request."""
    log = tmp_path / "fuse.log"
    monkeypatch.setenv("CONDAINER_FUSE_STATS", "1")

    def walk():
        for d, _, names in os.walk(mnt):
            for n in names:
                p = os.path.join(d, n)
                os.lstat(p)
                if os.path.isfile(p) and not os.path.islink(p):
                    with open(p, "rb") as f:
                        f.read()
            with pytest.raises(FileNotFoundError):
                os.stat(os.path.join(d, "no-such-name"))

    with python_mount(images["zstd"], mnt, log_path=str(log)):
        walk()
    first = _requests(log)
    log.unlink()
    with python_mount(images["zstd"], mnt, log_path=str(log)):
        walk()
        walk()
    twice = _requests(log)
    assert first["readdirplus"] > 10 and first["read"] > 10
    extra = {k: twice.get(k, 0) - first.get(k, 0) for k in twice}
    # Without the kernel's caches the second walk would cost as much as the first; allow a few
    # requests for pages the kernel itself dropped meanwhile (memory pressure on a busy machine).
    assert sum(extra.values()) <= max(2, sum(first.values()) // 20), (extra, first)


def _daemon_of(mnt: str) -> int:
    """The pid of our FUSE daemon serving MNT."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"condainer.fs.fuse" in argv and os.fsencode(mnt) in argv:
            return int(pid)
    raise AssertionError(f"no daemon serves {mnt}")


def _requests(log) -> dict:
    import re
    import time

    for _ in range(50):
        lines = [line for line in log.read_text().splitlines() if "requests:" in line]
        if lines:
            return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1].split("requests:")[1])}
        time.sleep(0.1)
    raise AssertionError("no request counts in the log")


@pytest.mark.parametrize("backend", ["python", "native"])
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_foreground_mount_ends_on_signal(images, mnt, backend, signame):
    """`cnd image mount --foreground` serves until a signal, then unmounts and exits (a Python-level
    SIGTERM handler used to keep libfuse from ever seeing SIGTERM)."""
    import signal
    import subprocess
    import sys
    import time

    if backend == "native" and not (have("squashfuse_ll") or have("squashfuse")):
        pytest.skip("squashfuse not installed")
    proc = subprocess.Popen(
        [sys.executable, "-m", "condainer", "image", "mount", "--backend", backend, "--foreground",
         images["zstd"], mnt],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a backgrounded shell ignores it
    )
    try:
        deadline = time.monotonic() + 20
        while not os.path.ismount(mnt):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        assert os.path.exists(os.path.join(mnt, "size_1"))
        proc.send_signal(getattr(signal, signame))
        proc.wait(timeout=15)
        assert not os.path.ismount(mnt)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
