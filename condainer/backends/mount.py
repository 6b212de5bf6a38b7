"""Mount an image read-only with squashfuse_ll/squashfuse or the Python FUSE reader."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from condainer import mounts
from condainer.backends.select import choose_mounter, fuse_problem
from condainer.errors import ImageError, MountError, ToolMissing, child_reason
from condainer.fs.format import MAGIC, SUPERBLOCK_SIZE
from condainer.project.layout import log_dir


def check_image_file(image: os.PathLike | str) -> Path:
    """Refuse what is clearly not a squashfs image before any daemon starts."""
    p = Path(image).absolute()
    if not p.exists():
        raise ImageError(f"image {p} does not exist")
    if not p.is_file():
        raise ImageError(f"image {p} is not a regular file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(SUPERBLOCK_SIZE)
    except OSError as exc:
        raise ImageError(f"cannot read image {p}: {exc.strerror}") from exc
    if len(head) < SUPERBLOCK_SIZE or int.from_bytes(head[:4], "little") != MAGIC:
        raise ImageError(f"{p} is not a squashfs image (bad magic or truncated superblock)")
    return p


def mount(
    image: os.PathLike | str,
    mountpoint: os.PathLike | str,
    *,
    backend: str = "auto",
    allow_other: bool = False,
    foreground: bool = False,
) -> str:
    """Mount IMAGE at MOUNTPOINT and return only once it answers; returns the backend used.

    The one place where `cnd exec`, `cnd mount` and `cnd image mount` check the image, the mount
    point and FUSE; the layers below trust it (the daemon reports a damaged image in one line)."""
    image = check_image_file(image)
    mountpoint = mounts.check_mountpoint(mountpoint)
    problem = fuse_problem()
    if problem:
        raise ToolMissing(f"cannot mount: {problem}")
    choice = choose_mounter(backend)
    with _daemon_environment():
        if choice.backend == "python":
            from condainer.fs.fuse import mount_image

            mount_image(image, mountpoint, log_path=fuse_log_path(), foreground=foreground,
                        allow_other=allow_other, checked=True)
            return "python"
        _mount_native(choice.tool, image, mountpoint, allow_other=allow_other, foreground=foreground)
    return "native"


def fuse_log_path() -> str:
    """Where the Python FUSE daemon logs: fuse.log in condainer's log directory (layout.log_dir)."""
    return os.path.join(log_dir(), "fuse.log")


@contextlib.contextmanager
def _daemon_environment() -> Iterator[None]:
    """Start the FUSE daemon without the job step's SLURM_* variables: it serves the node, not the
    step, and must not look like a task of the step that is still running (see condainer.reaper)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("SLURM_")}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def _mount_native(tool: str, image: Path, mountpoint: Path, *, allow_other: bool, foreground: bool) -> None:
    # default_permissions: the kernel checks the image's modes (squashfuse does not), which matters
    # as soon as allow_other lets other users in.
    opts = "ro,nosuid,nodev,default_permissions" + (",allow_other" if allow_other else "")
    cmd = [tool, "-o", opts, str(image), str(mountpoint)]
    if foreground:
        cmd.insert(1, "-f")
        os.execvp(cmd[0], cmd)
    # squashfuse daemonizes after the mount is in place, so its exit means "mounted or failed".
    result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        reason = child_reason(result.stderr, result.returncode)
        raise MountError(f"{os.path.basename(tool)} could not mount {image}: {reason}")
    _wait_ready(mountpoint, timeout=10.0)


def _wait_ready(mountpoint: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = mounts.state(mountpoint)
        if st == "mounted":
            return
        if st == "stale":
            mounts.unmount(mountpoint, lazy=True)
            raise MountError(f"the FUSE daemon for {mountpoint} died right after mounting")
        time.sleep(0.01)
    raise MountError(f"{mountpoint} did not become ready within {timeout:.0f} s")
