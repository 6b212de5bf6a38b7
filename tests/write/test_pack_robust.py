"""`cnd image pack` with both backends against hostile outputs, killed parents, signals, unreadable input.

Real processes, real signals and the real mksquashfs; nothing here needs more than a few seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from condainer.backends.pack import pack
from condainer.errors import ImageError
from condainer.fs.options import PackOptions, max_processors
from tests.helpers.mounts import IS_ROOT
from tests.write.test_safety import big_source

HAVE_MKSQUASHFS = shutil.which("mksquashfs") is not None
BACKENDS = [
    "python",
    pytest.param("native", marks=pytest.mark.skipif(not HAVE_MKSQUASHFS, reason="needs mksquashfs")),
]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = [sys.executable, "-m", "condainer", "image", "pack"]
ENV = {**os.environ, "PYTHONPATH": REPO}
OPTS = PackOptions(progress=False, processors=1)


def tiny_source(root) -> None:
    os.makedirs(root)
    with open(os.path.join(root, "f"), "w") as f:
        f.write("hello\n")


# --- 1. the output path -----------------------------------------------------------------------


def make_target(path, kind: str) -> None:
    if kind == "symlink":
        (path.parent / "precious").write_text("precious\n")
        os.symlink("precious", path)
    elif kind == "dangling-symlink":
        os.symlink("nowhere", path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "chardev":
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "directory":
        path.mkdir()


KINDS = ["symlink", "dangling-symlink", "fifo", "socket", "directory",
         pytest.param("chardev", marks=pytest.mark.skipif(not IS_ROOT, reason="mknod needs root"))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_existing_non_regular_output_is_refused_and_kept(tmp_path, backend, kind):
    tiny_source(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    target = out / "img.sqfs"
    make_target(target, kind)
    before = {name: os.lstat(out / name) for name in os.listdir(out)}
    with pytest.raises(ImageError) as info:
        pack(tmp_path / "src", target, OPTS, backend)
    assert "refusing to replace" in info.value.message and "\n" not in info.value.message
    after = {name: os.lstat(out / name) for name in os.listdir(out)}
    assert set(after) == set(before), "no temporary file may be left"
    for name, st in before.items():
        assert (after[name].st_mode, after[name].st_ino, after[name].st_rdev) == (st.st_mode, st.st_ino, st.st_rdev)
    if kind == "symlink":
        assert (out / "precious").read_text() == "precious\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_existing_fifo_output_is_refused_by_the_cli(tmp_path, backend):
    tiny_source(tmp_path / "src")
    os.mkfifo(tmp_path / "img.sqfs")
    res = subprocess.run([*CLI, "--backend", backend, str(tmp_path / "src"), str(tmp_path / "img.sqfs")],
                         capture_output=True, text=True, env=ENV, timeout=20)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnd: error: ") and "FIFO" in lines[0], res.stderr
    assert stat.S_ISFIFO(os.lstat(tmp_path / "img.sqfs").st_mode)
    assert sorted(os.listdir(tmp_path)) == ["img.sqfs", "src"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_existing_regular_output_is_replaced(tmp_path, backend):
    tiny_source(tmp_path / "src")
    target = tmp_path / "img.sqfs"
    target.write_text("an older image")
    old_inode = target.stat().st_ino
    pack(tmp_path / "src", target, OPTS, backend)
    assert target.read_bytes()[:4] == b"hsqs" and target.stat().st_ino != old_inode
    assert sorted(os.listdir(tmp_path)) == ["img.sqfs", "src"]


# --- 2. processors: a cap, and no process outlives a killed packer ----------------------------


def test_too_many_processors_is_refused_before_anything_starts(tmp_path):
    limit = max_processors()
    with pytest.raises(ImageError) as info:
        PackOptions(processors=limit + 1)
    assert f"must be from 1 to {limit}" in info.value.message and "\n" not in info.value.message
    PackOptions(processors=limit)  # the limit itself is fine


@pytest.mark.parametrize("backend", BACKENDS)
def test_too_many_processors_is_refused_by_the_cli(tmp_path, backend):
    # Just above the limit, never more: without the cap this packs a tiny tree with ~65 workers.
    limit = max_processors()
    if limit > 256:
        pytest.skip("a machine this large would start too many workers if the cap were missing")
    tiny_source(tmp_path / "src")
    res = subprocess.run([*CLI, "--backend", backend, "--processors", str(limit + 1),
                          str(tmp_path / "src"), str(tmp_path / "img.sqfs")],
                         capture_output=True, text=True, env=ENV, timeout=20)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"processors {limit + 1}" in lines[0], res.stderr
    assert sorted(os.listdir(tmp_path)) == ["src"]


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains TEXT."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def start_slow_pack(tmp_path, backend: str, quiet: bool = False, **popen) -> tuple[subprocess.Popen, str]:
    """A CLI pack, started and writing its image. mksquashfs is then stopped (SIGSTOP): the pack
    lasts as long as the test needs, however fast the machine. The Python writer's compression
    threads cannot be stopped on their own, but zstd 19 on 50 MB takes it many seconds.

    QUIET (-q): mksquashfs then draws no progress bar, so nothing but our fixes can stop it: with
    one, it dies of SIGPIPE on its first write once the packer is gone.
    """
    src = tmp_path / "src"
    big_source(src)
    out = tmp_path / "out"
    out.mkdir()
    cli = [*CLI[:3], "-q", *CLI[3:]] if quiet else CLI
    cmd = [*cli, "--backend", backend, "--compression", "zstd", "--level", "19", "--processors", "2",
           str(src), str(out / "img.sqfs")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=ENV, **popen)
    deadline = time.monotonic() + 15
    while not os.listdir(out) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    for pid in processes_mentioning(str(src)):
        if pid != proc.pid:
            os.kill(pid, signal.SIGSTOP)  # SIGKILL (cleanup, PDEATHSIG) still ends a stopped process
    assert proc.poll() is None, "pack finished before it could be interrupted"
    return proc, str(src)


def kill_leftovers(src: str) -> None:
    for pid in processes_mentioning(src):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_compressor_outlives_a_killed_packer(tmp_path, backend):
    """SIGKILL (or the OOM killer, or the end of a Slurm step) runs no cleanup in the packer.

    mksquashfs must die with it; the Python writer compresses in threads of its own process and
    starts no process at all."""
    proc, src = start_slow_pack(tmp_path, backend, quiet=True)
    try:
        helpers = [pid for pid in processes_mentioning(src) if pid != proc.pid]
        assert bool(helpers) == (backend == "native"), helpers
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while processes_mentioning(src) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_mentioning(src) == [], "a compressor outlived its packer"
    finally:
        kill_leftovers(src)  # first: orphans hold the stderr pipe open, communicate() would wait on them
        proc.kill()
        proc.communicate(timeout=10)


# --- 3 and 5. signals: the same cleanup and the same report, whichever backend ----------------

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


def default_signals() -> None:
    # A shell that started us in the background (or nohup) leaves SIGINT (SIGHUP) ignored, and the
    # packer would keep it so: give it the dispositions it has in a terminal.
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_mid_pack_cleans_up_and_reports_alike(tmp_path, backend, signum):
    """Ctrl-C (to the process group), SIGTERM (kill, Slurm), SIGHUP (ssh disconnect) to the packer."""
    proc, src = start_slow_pack(tmp_path, backend, start_new_session=True, preexec_fn=default_signals)
    try:
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 130, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0] == f"cnd: error: pack of {tmp_path / 'out' / 'img.sqfs'} interrupted: no image written"
        assert os.listdir(tmp_path / "out") == [], "the temporary image must be removed"
        time.sleep(0.2)
        assert processes_mentioning(src) == [], "no worker or mksquashfs may be left"
    finally:
        kill_leftovers(src)
        proc.kill()
        proc.communicate(timeout=10)


def test_an_ignored_sighup_stays_ignored_during_a_pack(tmp_path, monkeypatch):
    """nohup cnd image pack ...: the hangup must not interrupt the pack it was meant to protect."""
    from condainer.fs.interrupts import signals_interrupt

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with signals_interrupt():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        with signals_interrupt():
            assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, previous)


# --- 4. input the packer cannot read ----------------------------------------------------------

NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]


@pytest.fixture
def open_tmp():
    """A temporary directory other users can reach (pytest's tmp_path is root's alone)."""
    path = tempfile.mkdtemp(prefix="cnd-unread-")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        for root, dirs, _ in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(path)


def nobody_cannot_run_python() -> str | None:
    """Why nobody cannot start the interpreter running the tests, or None. A Python installed under
    a home only root may enter (pyenv in /root) cannot be loaded by another user: its libpython or
    standard library is out of reach. Such a user could not run cnd from it either."""
    if not IS_ROOT or not shutil.which("setpriv"):
        return "needs root (to become nobody) and setpriv"
    res = subprocess.run([*NOBODY, sys.executable, "-c", "import condainer"], capture_output=True, text=True,
                         env=ENV, timeout=60, cwd="/")
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or [f"exit code {res.returncode}"])[-1]
        return f"nobody cannot start {sys.executable}: {last}"
    return None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("what", ["file", "directory"])
def test_unreadable_input_fails_with_either_backend(open_tmp, backend, what):
    """As a user, not root (root reads anything): mksquashfs stored the file empty / left the
    directory out and exited 0; now both backends stop and name it."""
    why = nobody_cannot_run_python()
    if why:
        pytest.skip(why)
    src, out = os.path.join(open_tmp, "src"), os.path.join(open_tmp, "out")
    tiny_source(src)
    os.makedirs(os.path.join(src, "closed"))
    with open(os.path.join(src, "closed", "inside"), "w") as f:
        f.write("x\n")
    with open(os.path.join(src, "secret"), "w") as f:
        f.write("secret\n")
    os.chmod(os.path.join(src, "secret" if what == "file" else "closed"), 0)
    os.mkdir(out)
    os.chown(out, 65534, 65534)
    res = subprocess.run([*NOBODY, *CLI, "--backend", backend, src, os.path.join(out, "img.sqfs")],
                         capture_output=True, text=True, env=ENV, timeout=20)
    assert res.returncode == 1, res.stderr
    bad = os.path.join(src, "secret" if what == "file" else "closed")
    assert res.stderr.strip().splitlines() == [f"cnd: error: cannot read {bad}: Permission denied"]
    assert os.listdir(out) == [], "the temporary image must be removed"


@pytest.fixture
def stale_mount(open_tmp):
    """SRC with a FUSE mount whose daemon was killed: every access to it fails with ENOTCONN."""
    if not (IS_ROOT and HAVE_MKSQUASHFS and shutil.which("squashfuse") and os.path.exists("/dev/fuse")):
        pytest.skip("needs root, /dev/fuse, squashfuse and mksquashfs")
    src, mnt = os.path.join(open_tmp, "src"), os.path.join(open_tmp, "src", "mnt")
    tiny_source(src)
    os.mkdir(mnt)
    image = os.path.join(open_tmp, "small.sqfs")
    subprocess.run(["mksquashfs", src, image, "-quiet", "-no-progress", "-e", "mnt"], check=True,
                   capture_output=True)
    daemon = subprocess.Popen(["squashfuse", "-f", image, mnt], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.ismount(mnt) and time.monotonic() < deadline:
            time.sleep(0.05)
        daemon.kill()
        daemon.wait()
        deadline = time.monotonic() + 5  # the kernel may answer from its attribute cache for a while
        while time.monotonic() < deadline:
            try:
                os.stat(mnt)
            except OSError:
                break
            time.sleep(0.1)
        with pytest.raises(OSError):
            os.stat(mnt)
        yield src
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        subprocess.run(["umount", "-l", mnt], capture_output=True)
        os.unlink(image)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stale_fuse_mount_in_the_source_fails_with_either_backend(stale_mount, backend):
    image = os.path.join(os.path.dirname(stale_mount), "img.sqfs")
    res = subprocess.run([*CLI, "--backend", backend, stale_mount, image],
                         capture_output=True, text=True, env=ENV, timeout=20)
    assert res.returncode == 1, res.stderr
    mnt = os.path.join(stale_mount, "mnt")
    assert res.stderr.strip().splitlines() == [f"cnd: error: cannot read {mnt}: Transport endpoint is not connected"]
    assert sorted(os.listdir(os.path.dirname(stale_mount))) == ["small.sqfs", "src"]
