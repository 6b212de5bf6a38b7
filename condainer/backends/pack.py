"""Pack a directory tree into a squashfs image with mksquashfs or the Python writer.

Both write to a temporary file beside the image and rename it into place only when complete, so an
error, Ctrl-C or a full disk never leaves a half-written image under the final name.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import signal
import subprocess
from pathlib import Path

from condainer import console
from condainer.backends.select import choose_packer
from condainer.errors import ImageError, child_reason
from condainer.fs.atomic import temporary_beside, umask
from condainer.fs.compression import level_range
from condainer.fs.options import PackOptions
from condainer.sysinfo import die_with_parent, signals_interrupt, usable_cpus


def pack(src: os.PathLike | str, image: os.PathLike | str, options: PackOptions, backend: str = "auto",
         reuse: os.PathLike | str | None = None) -> str:
    """Pack SRC into IMAGE; returns the backend that did it ("native" or "python").

    REUSE: an old image whose compressed blocks the Python writer copies where they hold exactly
    the new data (fs/writer/reuse.py). mksquashfs cannot, so ``auto`` then picks the Python writer,
    and ``native`` is refused.
    """
    src, image = Path(src).absolute(), Path(image).absolute()
    if not src.is_dir():
        raise ImageError(f"source {src} is not a directory")
    if not image.parent.is_dir():
        raise ImageError(f"cannot write {image}: directory {image.parent} does not exist")
    if reuse is not None and backend == "native":
        raise ImageError("--reuse needs the python backend: mksquashfs cannot copy blocks from an old image")
    choice = choose_packer("python" if reuse is not None else backend)
    from condainer.fs.writer import check_target, pack_tree

    check_target(image)
    if choice.backend == "python":
        # -q silences the writer's progress line, as it does mksquashfs's (mksquashfs_args), and
        # its other lines through console.info.
        options = dataclasses.replace(options, progress=options.progress and not console.is_quiet())
        pack_tree(src, image, options, reuse=reuse, say=console.info)
    else:
        _pack_native(choice.tool, src, image, options)
    return choice.backend


def mksquashfs_args(
    src: Path, target: Path, options: PackOptions, excludes: list[str], exit_on_error: bool = True
) -> list[str]:
    """The mksquashfs command line that matches OPTIONS (same image settings as the Python writer).

    EXIT_ON_ERROR: without -exit-on-error (mksquashfs 4.5+), mksquashfs stores a file it cannot read
    as an empty file and leaves out a directory it cannot open, says so only without -quiet, and
    exits 0; the Python writer refuses such a tree.
    """
    args = [str(src), str(target), "-noappend", "-b", str(options.block_size)]
    if exit_on_error:
        args.append("-exit-on-error")
    args += ["-processors", str(options.processors or usable_cpus())]
    level = options.effective_level
    if options.compression == "none":
        args += ["-noI", "-noD", "-noF", "-noX"]
    else:
        args += ["-comp", options.compression]
        if level is not None and level_range(options.compression) is not None:
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

    fd, tmp_name = temporary_beside(str(image))  # a fresh name beside IMAGE that nothing else can own
    os.close(fd)
    tmp = Path(tmp_name)
    # mksquashfs stores a source that is a symlink as that symlink: give it the directory, which is
    # what the Python writer packs too.
    src = src.resolve()
    # Leave the image (and our temporary file) out when it is written inside the tree it packs.
    inside = [p.resolve() for p in (image, tmp)]
    excludes = [str(p.relative_to(src)) for p in inside if p.is_relative_to(src)]
    cmd = [tool, *mksquashfs_args(src, tmp, options, excludes, _knows_exit_on_error(tool))]
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
        unread = _unreadable(err)
        if unread:
            raise ImageError(unread)
        if proc.returncode != 0:
            raise ImageError(f"mksquashfs failed: {child_reason(err, proc.returncode)}")
        os.chmod(tmp, 0o666 & ~umask())
        check_target(image)  # again: it may have been put there while mksquashfs ran
        os.replace(tmp, image)
    finally:
        tmp.unlink(missing_ok=True)


@functools.cache
def _knows_exit_on_error(tool: str) -> bool:
    """Whether this mksquashfs has -exit-on-error (4.5 and later; RHEL 9 ships 4.4)."""
    try:
        res = subprocess.run([tool, "-help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "-exit-on-error" in res.stdout + res.stderr


# What mksquashfs 4.5.1 prints about input it cannot read: with -exit-on-error it stops at the first
# one; without, it goes on ("skipping", "creating empty file", "ignoring") and exits 0. With -quiet
# only the "Cannot stat" line is printed, so without -exit-on-error the others go unnoticed.
_UNREAD = re.compile(
    r"^(?:Could not open (?P<dir>.+?)(?:, skipping\.*)?"
    r"|Failed to read file (?P<file>.+?)(?:, creating empty file)?"
    r"|Cannot stat dir/file (?P<stat>.+?) because (?P<why>.+?)(?:, ignoring)?)$"
)


def _unreadable(stderr: str | None) -> str | None:
    """"cannot read PATH: REASON" for the first input mksquashfs could not read, else None.

    mksquashfs does not always say why; asking the file system ourselves gives the same answer the
    Python writer reports (Permission denied, Transport endpoint is not connected, ...).
    """
    for line in (stderr or "").splitlines():
        found = _UNREAD.match(line.strip())
        if not found:
            continue
        path = found["dir"] or found["file"] or found["stat"]
        reason = found["why"] or _open_error(path)
        return f"cannot read {path}: {reason}" if reason else f"cannot read {path} (mksquashfs: {line.strip()})"
    return None


def _open_error(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return exc.strerror
    os.close(fd)
    return None


