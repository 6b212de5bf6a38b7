"""Determinism, safe output and failure injection: what is left behind when a pack fails."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from condainer.errors import ImageError
from condainer.fs.writer import scan
from tests.helpers import snapshots
from tests.helpers.images import pack, unsquashfs
from tests.helpers.mounts import IS_ROOT, kernel_mount

SCRIPT = """
import sys
from condainer.errors import CondainerError
from condainer.fs.options import PackOptions
from condainer.fs.writer import pack_tree
src, image, comp, level, procs = sys.argv[1:]
try:
    pack_tree(src, image, PackOptions(compression=comp, level=int(level), processors=int(procs), progress=False))
except CondainerError as exc:
    print(f"cnd: error: {exc.message}", file=sys.stderr)
    sys.exit(exc.exit_code)
"""


def small_tree(root, seed=0, big=3) -> None:
    rnd = random.Random(seed)
    os.makedirs(os.path.join(root, "d", "e"))
    for i in range(60):
        with open(os.path.join(root, "d" if i % 2 else "d/e", f"f{i}"), "wb") as f:
            f.write(rnd.randbytes(rnd.randrange(0, 9000)) + b"abc" * rnd.randrange(0, 50000))
    for i in range(big):
        with open(os.path.join(root, f"big{i}"), "wb") as f:
            f.write(rnd.randbytes(300_000) + bytes(400_000) + b"tail" * 1000)
    os.utime(os.path.join(root, "d", "f1"), (2**32 - 1, 2**32 - 1))


# --- determinism ------------------------------------------------------------------------------


def test_same_bytes_whatever_processors_with_source_date_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    small_tree(tmp_path / "src")
    digests = set()
    for procs in (1, 2, 3, 2):
        image = tmp_path / f"img{procs}.sqfs"
        pack(tmp_path / "src", image, compression="zstd", level=3, processors=procs)
        digests.add(image.read_bytes())
    assert len(digests) == 1


def test_source_date_epoch_sets_mkfs_time_and_clamps_mtimes(tmp_path, monkeypatch):
    from PySquashfsImage import SquashFsImage

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    small_tree(tmp_path / "src", big=0)
    os.utime(tmp_path / "src" / "d" / "f3", (1000, 1000))
    pack(tmp_path / "src", tmp_path / "img.sqfs")
    with SquashFsImage.from_file(str(tmp_path / "img.sqfs")) as img:
        assert img.sblk.mkfs_time == 1700000000
        assert img.select("/d/f1").time == 1700000000  # newer: clamped
        assert img.select("/d/f3").time == 1000  # older: kept


def test_bad_source_date_epoch_is_an_image_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    (tmp_path / "src").mkdir()
    with pytest.raises(ImageError):
        pack(tmp_path / "src", tmp_path / "img.sqfs")
    assert os.listdir(tmp_path) == ["src"]


# --- safe output ------------------------------------------------------------------------------


def test_image_inside_source_is_left_out(tmp_path):
    src = tmp_path / "src"
    small_tree(src, big=0)
    pack(src, src / "image.sqfs")  # first pack: the temp file is inside src
    mtime_before = int(os.stat(src).st_mtime)
    pack(src, src / "image.sqfs")  # second: the old image is inside src too
    expected = snapshots.snapshot(src, xattrs=False, skip={b"image.sqfs"})
    packed = snapshots.snapshot_image(src / "image.sqfs")
    # The root's mtime is the one seen while packing: creating the temp file
    # and renaming it over the image move it, so it may be a second older.
    root_mtime = packed[b"."].pop("mtime")
    assert mtime_before <= root_mtime <= expected[b"."].pop("mtime")
    assert packed == expected
    assert sorted(os.listdir(src)) == ["d", "image.sqfs"]


def test_image_mode_honours_umask(tmp_path):
    (tmp_path / "src").mkdir()
    old = os.umask(0o027)
    try:
        pack(tmp_path / "src", tmp_path / "img.sqfs")
    finally:
        os.umask(old)
    assert (tmp_path / "img.sqfs").stat().st_mode & 0o777 == 0o640


def test_symlinked_source_entries_are_not_followed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "secret").write_bytes(b"not to be packed")
    os.symlink(tmp_path / "secret", src / "link")
    os.symlink(tmp_path, src / "dirlink")
    pack(src, tmp_path / "img.sqfs")
    snap = snapshots.snapshot_image(tmp_path / "img.sqfs")
    assert set(snap) == {b".", b"link", b"dirlink"} and snap[b"link"]["type"] == "symlink"


@pytest.mark.parametrize("case", ["missing-src", "src-is-file", "missing-out-dir", "image-is-dir"])
def test_bad_paths_are_one_line_errors(tmp_path, case):
    src, image = tmp_path / "src", tmp_path / "img.sqfs"
    src.mkdir()
    if case == "missing-src":
        src = tmp_path / "nope"
    elif case == "src-is-file":
        src = tmp_path / "file"
        src.write_text("x")
    elif case == "missing-out-dir":
        image = tmp_path / "no" / "img.sqfs"
    else:
        image.mkdir()
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ImageError) as info:
        pack(src, image)
    assert "\n" not in info.value.message
    assert sorted(os.listdir(tmp_path)) == before


# --- failure injection ------------------------------------------------------------------------


def assert_nothing_left(directory, expected: list[str]) -> None:
    assert sorted(os.listdir(directory)) == sorted(expected)


@pytest.mark.skipif(not IS_ROOT or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_unreadable_file(tmp_path):
    """A real EACCES: root packs without CAP_DAC_OVERRIDE/DAC_READ_SEARCH a file of mode 000.

    (Plain chmod 000 does not stop root; dropping the capabilities makes root obey the mode bits
    like any user, and the pack runs in a child so the test process keeps its capabilities.)
    """
    src = tmp_path / "src"
    small_tree(src, big=1)
    secret = src / "d" / "secret"
    secret.write_bytes(b"x" * 5000)
    secret.chmod(0)
    caps = "-dac_override,-dac_read_search"
    proc = subprocess.run(
        [
            "setpriv",
            "--inh-caps",
            caps,
            "--bounding-set",
            caps,
            sys.executable,
            "-c",
            SCRIPT,
            str(src),
            str(tmp_path / "img.sqfs"),
            "zstd",
            "3",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "secret" in lines[0] and "Permission denied" in lines[0], proc.stderr
    assert_nothing_left(tmp_path, ["src"])


def test_file_removed_between_scan_and_read(tmp_path, monkeypatch):
    src = tmp_path / "src"
    small_tree(src, big=1)
    real_list = scan.Scanner.list

    def list_then_remove(self, directory):
        subdirs = real_list(self, directory)
        if directory == 0:  # the root, where big0 is, has just been listed
            os.unlink(src / "big0")
        return subdirs

    monkeypatch.setattr(scan.Scanner, "list", list_then_remove)
    with pytest.raises(ImageError, match="cannot read .*big0: No such file"):
        pack(src, tmp_path / "img.sqfs", processors=2)
    assert_nothing_left(tmp_path, ["src"])


def _first_of_size_tree(src) -> None:
    """a/x and c/y are twins; b/z has their size, not their content. Data goes a, b, c (inode order),
    so x is stored before anyone knows its size comes again, and is read again and hashed for z."""
    rnd = random.Random(5)
    twin = rnd.randbytes(3000)
    for directory, name, content in (("a", "x", twin), ("b", "z", rnd.randbytes(3000)), ("c", "y", twin)):
        os.makedirs(src / directory)
        (src / directory / name).write_bytes(content)


def test_twins_whose_size_first_came_unhashed_share_their_data(tmp_path):
    from condainer.fs.reader.image import SquashfsReader

    src = tmp_path / "src"
    _first_of_size_tree(src)
    image = tmp_path / "img.sqfs"
    pack(src, image, processors=2)
    with SquashfsReader(image) as r:
        x, y, z = (r.resolve(p) for p in ("/a/x", "/c/y", "/b/z"))
        assert (x.fragment, x.frag_offset) == (y.fragment, y.frag_offset)
        assert (z.fragment, z.frag_offset) != (x.fragment, x.frag_offset)
    out = unsquashfs(image, tmp_path)
    for rel in ("a/x", "b/z", "c/y"):
        assert open(os.path.join(out, rel), "rb").read() == (src / rel).read_bytes()


def test_file_changed_after_it_was_stored_is_an_error_not_a_wrong_twin(tmp_path, monkeypatch):
    """x is read again to be hashed when z (same size) comes; if x changed since it was stored, the
    digest is no longer that of what the image holds, so the pack stops rather than merge on it."""
    src = tmp_path / "src"
    _first_of_size_tree(src)
    real_list = scan.Scanner.list

    def list_then_change(self, directory):
        if self.tree.name(directory) == b"b":  # a's files are stored; b's come next
            time.sleep(0.05)  # past the clock tick of x's ctime
            (src / "a" / "x").write_bytes((src / "b" / "z").read_bytes())  # same size: z's twin now
        return real_list(self, directory)

    monkeypatch.setattr(scan.Scanner, "list", list_then_change)
    with pytest.raises(ImageError, match=r"/a/x: changed while it was being packed$"):
        pack(src, tmp_path / "img.sqfs", processors=2)
    assert_nothing_left(tmp_path, ["src"])


def test_inodes_built_while_blocks_are_queued_list_every_block(tmp_path, monkeypatch):
    """The inode table is built while the last blocks are still being compressed (pipeline
    BACKLOG_BYTES); a file with full blocks at the end of the tree must wait for its own, or its
    inode would list sizes of blocks not written yet."""
    from condainer.fs.writer import pipeline

    src = tmp_path / "src"
    small_tree(src, big=0)
    rnd = random.Random(5)
    (src / "zz-last").write_bytes(rnd.randbytes(5 * 131072 + 77))  # last in inode order, 5 blocks
    waits = []
    real = pipeline.BlockPipeline.write_until

    def write_until(self, done):
        waits.append(done())
        real(self, done)

    monkeypatch.setattr(pipeline.BlockPipeline, "write_until", write_until)
    pack(src, tmp_path / "img.sqfs", processors=2)
    assert waits and not any(waits)  # files whose blocks were still queued when their inode came
    snapshots.assert_same(
        snapshots.snapshot(src), snapshots.snapshot(unsquashfs(tmp_path / "img.sqfs", tmp_path))
    )


@pytest.fixture
def tiny_fs():
    if not IS_ROOT:
        pytest.skip("mounting tmpfs needs root")
    mnt = tempfile.mkdtemp(prefix="enospc-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", mnt], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", mnt], check=False)
        os.rmdir(mnt)


@pytest.mark.parametrize("procs", [1, 2])
def test_full_disk(tmp_path, tiny_fs, procs):
    src = tmp_path / "src"
    small_tree(src, big=6)
    with pytest.raises(ImageError) as info:
        pack(src, os.path.join(tiny_fs, "img.sqfs"), compression="gzip", level=1, processors=procs)
    assert info.value.message.startswith("cannot write ")
    assert "No space left on device" in info.value.message and "\n" not in info.value.message
    assert os.listdir(tiny_fs) == []


def big_source(root) -> None:
    rnd = random.Random(3)
    os.makedirs(root)
    chunk = rnd.randbytes(1 << 20)
    for i in range(48):
        with open(os.path.join(root, f"f{i}"), "wb") as f:
            f.write(chunk[i:] + chunk[:i] + b"text" * 100000)


CLI = [
    sys.executable,
    "-m",
    "condainer",
    "image",
    "pack",
    "--backend",
    "python",
    "--compression",
    "zstd",
    "--level",
    "19",
    "--processors",
    "2",
]


@pytest.mark.parametrize("via", ["library", "cli"])
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 130)])
def test_signal_mid_pack(tmp_path, signum, code, via):
    """Ctrl-C (SIGINT to the whole process group, workers included) or SIGTERM to the packer."""
    src = tmp_path / "src"
    big_source(src)
    out = tmp_path / "out"
    out.mkdir()
    image = str(out / "img.sqfs")
    if via == "library":
        cmd = [sys.executable, "-c", SCRIPT, str(src), image, "xz", "9", "2"]
    else:
        cmd = [*CLI, str(src), image]
    # A shell that started us in the background leaves SIGINT ignored, and Python then keeps it so:
    # the packer under test must start with the default disposition, as it has in a terminal.
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not os.listdir(out) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the data phase: xz 9 / zstd 19 on 50 MB take far longer
        assert proc.poll() is None, "pack finished before it could be interrupted"
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no image written" in lines[0], err
    assert os.listdir(out) == []
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):  # no worker left behind
        os.killpg(proc.pid, 0)


def test_progress_line_on_a_terminal_and_silence_otherwise(tmp_path, monkeypatch, capsys):
    from condainer import console
    from condainer.backends.pack import pack as app_pack
    from condainer.fs.options import PackOptions

    small_tree(tmp_path / "src", big=1)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    pack(tmp_path / "src", tmp_path / "a.sqfs", progress=True)
    err = capsys.readouterr().err
    assert "pack:" in err and "files" in err and err.endswith("\n")
    pack(tmp_path / "src", tmp_path / "b.sqfs", progress=False)
    monkeypatch.setattr(console, "_quiet", True)  # -q is condainer's: its pack passes it to the writer
    app_pack(tmp_path / "src", tmp_path / "c.sqfs", PackOptions(progress=True, processors=1), backend="python")
    assert capsys.readouterr().err == ""


# --- large files ------------------------------------------------------------------------------


@pytest.mark.skipif(not IS_ROOT, reason="loop mounts need root")
def test_file_over_4_gib(tmp_path, stack):
    """Size >= 4 GiB needs the extended file inode (sparse, so it costs no disk)."""
    src = tmp_path / "src"
    src.mkdir()
    size = (1 << 32) + 12345
    with open(src / "huge", "wb") as f:
        f.write(b"head")
        f.seek(size - 4)
        f.write(b"tail")
    pack(src, tmp_path / "img.sqfs", compression="zstd", level=1)
    assert (tmp_path / "img.sqfs").stat().st_size < 1 << 20
    mnt = stack.enter_context(kernel_mount(tmp_path / "img.sqfs"))
    with open(os.path.join(mnt, "huge"), "rb") as f:
        assert f.read(4) == b"head"
        f.seek(size - 4)
        assert f.read() == b"tail"
        f.seek(1 << 32)
        assert f.read(8) == bytes(8)
    assert os.stat(os.path.join(mnt, "huge")).st_size == size


@pytest.mark.skipif(not IS_ROOT, reason="chown needs root")
def test_all_root_stores_uid_gid_zero(tmp_path):
    small_tree(tmp_path / "src", big=0)
    os.chown(tmp_path / "src" / "d" / "f1", 100000, 100001)
    pack(tmp_path / "src", tmp_path / "img.sqfs", all_root=True)
    snap = snapshots.snapshot_image(tmp_path / "img.sqfs")
    assert {(r["uid"], r["gid"]) for r in snap.values()} == {(0, 0)}


@pytest.mark.skipif(not IS_ROOT, reason="loop mounts need root")
def test_hard_linked_symlinks_fifos_and_devices(tmp_path, stack):
    src = tmp_path / "src"
    src.mkdir()
    os.symlink("target", src / "sym")
    os.link(src / "sym", src / "sym2", follow_symlinks=False)
    os.mkfifo(src / "fifo")
    os.link(src / "fifo", src / "fifo2")
    os.mknod(src / "dev", 0o20600, os.makedev(1, 5))
    os.link(src / "dev", src / "dev2")
    pack(src, tmp_path / "img.sqfs")
    mnt = stack.enter_context(kernel_mount(tmp_path / "img.sqfs"))
    snapshots.assert_same(snapshots.snapshot(src), snapshots.snapshot(mnt))
    assert os.lstat(os.path.join(mnt, "sym2")).st_nlink == 2


def test_sigterm_handler_is_restored_after_pack(tmp_path):
    def mine(signum, frame):  # pragma: no cover - never called
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        (tmp_path / "src").mkdir()
        pack(tmp_path / "src", tmp_path / "img.sqfs")
        with pytest.raises(ImageError):
            pack(tmp_path / "missing", tmp_path / "img2.sqfs")
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_source_reached_through_a_symlink(tmp_path):
    small_tree(tmp_path / "real", big=0)
    os.setxattr(tmp_path / "real", "user.root", b"on the directory, not the link")
    os.symlink(tmp_path / "real", tmp_path / "via-link")
    pack(tmp_path / "via-link", tmp_path / "img.sqfs")
    assert snapshots.snapshot_image(tmp_path / "img.sqfs") == snapshots.snapshot(
        tmp_path / "real", xattrs=False
    )
    out = unsquashfs(tmp_path / "img.sqfs", tmp_path)
    assert os.getxattr(out, "user.root") == b"on the directory, not the link"
