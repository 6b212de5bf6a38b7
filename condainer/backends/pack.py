"""Pack a directory tree into a squashfs image with mksquashfs or the Python writer.

Both write to a temporary file beside the image and rename it into place only when complete, so an
error, Ctrl-C or a full disk never leaves a half-written image under the final name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

from condainer import console
from condainer.backends.select import choose_packer
from condainer.errors import ImageError, child_reason
from condainer.fs.options import PackOptions
from condainer.sysinfo import die_with_parent, signals_interrupt, usable_cpus


def pack(src: os.PathLike | str, image: os.PathLike | str, options: PackOptions, backend: str = "auto") -> str:
    """Pack SRC into IMAGE; returns the backend that did it ("native" or "python")."""
    src, image = Path(src).absolute(), Path(image).absolute()
    if not src.is_dir():
        raise ImageError(f"source {src} is not a directory")
    if not image.parent.is_dir():
        raise ImageError(f"cannot write {image}: directory {image.parent} does not exist")
    choice = choose_packer(backend)
    from condainer.fs.writer import check_target, pack_tree

    check_target(image)
    if choice.backend == "python":
        pack_tree(src, image, options)
    else:
        _pack_native(choice.tool, src, image, options)
    return choice.backend


def mksquashfs_args(src: Path, target: Path, options: PackOptions, excludes: list[str]) -> list[str]:
    """The mksquashfs command line that matches OPTIONS (same image settings as the Python writer)."""
    args = [str(src), str(target), "-noappend", "-b", str(options.block_size)]
    args += ["-processors", str(options.processors or usable_cpus())]
    level = options.effective_level
    if options.compression == "none":
        args += ["-noI", "-noD", "-noF", "-noX"]
    else:
        args += ["-comp", options.compression]
        if options.compression in ("zstd", "gzip") and level is not None:
            args += ["-Xcompression-level", str(level)]
    if options.all_root:
        args.append("-all-root")
    # -quiet drops mksquashfs's summary; its progress bar stays unless -no-progress.
    args.append("-quiet")
    if not (options.progress and not console.is_quiet()):
        args.append("-no-progress")
    if excludes:
        args += ["-e", *excludes]
    return args


def _pack_native(tool: str, src: Path, image: Path, options: PackOptions) -> None:
    from condainer.fs.writer import interrupted

    with signals_interrupt():
        try:
            _run_mksquashfs(tool, src, image, options)
        except KeyboardInterrupt:
            raise interrupted(str(image)) from None


def _run_mksquashfs(tool: str, src: Path, image: Path, options: PackOptions) -> None:
    from condainer.fs.writer import check_target

    # mkstemp: O_EXCL | O_NOFOLLOW, a fresh name beside IMAGE that nothing else can own.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{image.name}.", suffix=".tmp", dir=image.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mksquashfs stores a source that is a symlink as that symlink: give it the directory, which is
    # what the Python writer packs too.
    src = src.resolve()
    # Leave the image (and our temporary file) out when it is written inside the tree it packs.
    inside = [p.resolve() for p in (image, tmp)]
    excludes = [str(p.relative_to(src)) for p in inside if p.is_relative_to(src)]
    cmd = [tool, *mksquashfs_args(src, tmp, options, excludes)]
    quiet = console.is_quiet() or not options.progress
    me = os.getpid()
    try:
        with subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL if quiet else None,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # our own SIGINT handling decides when it stops
            preexec_fn=lambda: die_with_parent(me),  # and SIGKILL of cnd ends it too
        ) as proc:
            try:
                _, err = proc.communicate()
            except BaseException:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
        if proc.returncode != 0:
            raise ImageError(f"mksquashfs failed: {child_reason(err, proc.returncode)}")
        os.chmod(tmp, 0o666 & ~_umask())
        check_target(image)  # again: it may have been put there while mksquashfs ran
        os.replace(tmp, image)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
