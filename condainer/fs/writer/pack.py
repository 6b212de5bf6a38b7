"""pack_tree: a directory -> a squashfs 4.0 image file, safely.

What squashfs cannot store is refused before the image is complete: a target that is not a regular
file at once, too many ids or mtimes out of range once the tree is listed (it is listed while its
data is written). The image goes to a temporary file beside IMAGE and is renamed over it only when
complete, so a failure, Ctrl-C or SIGTERM never leaves a partial image behind. The bytes themselves
are image.py's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import gc
import os
import stat
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from condainer.errors import ImageError
from condainer.fs import format as fmt
from condainer.fs.atomic import temporary_beside
from condainer.fs.compression import Codec, make_codec
from condainer.fs.host import usable_cpus
from condainer.fs.interrupts import signals_interrupt
from condainer.fs.options import PackOptions
from condainer.fs.progress import Progress, Say, human_bytes, say_on_stderr
from condainer.fs.writer.data import DataWriter
from condainer.fs.writer.image import write_image
from condainer.fs.writer.pipeline import BlockPipeline
from condainer.fs.writer.scan import Scanner, Tree, printable

if TYPE_CHECKING:
    from condainer.fs.writer.reuse import OldImage


@dataclasses.dataclass(frozen=True)
class PackStats:
    """What pack_tree wrote."""

    files: int
    dirs: int
    inodes: int
    bytes_in: int
    image_size: int
    seconds: float


def _source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    try:
        epoch = int(value)
    except ValueError:
        raise ImageError(f"SOURCE_DATE_EPOCH={value!r}: not an integer") from None
    if not 0 <= epoch < 1 << 32:
        raise ImageError(f"SOURCE_DATE_EPOCH={value}: out of range for squashfs (0 to 2^32-1)")
    return epoch


def pack_tree(
    src: os.PathLike,
    image: os.PathLike,
    options: PackOptions,
    reuse: os.PathLike | str | None = None,
    *,
    say: Say = say_on_stderr,
) -> PackStats:
    """Pack directory ``src`` into the squashfs image ``image`` (replaced if it exists).

    Raises ImageError (one line) for every expected failure: unreadable input, bad settings, full
    disk, interruption. Nothing is left at ``image`` or beside it unless the pack succeeded.
    ``reuse``: a previous image (it may be ``image`` itself, even mounted: it is only read) whose
    compressed blocks are copied wherever they hold exactly the new data, so that unchanged files
    are not compressed again; the image is the same bytes as without it when the old one was
    written by this writer with the same settings. An old image that cannot serve (missing,
    damaged, other settings) is named in one line, and the pack goes on without it.
    ``say`` takes those lines for a person (what was reused, xattrs left out): condainer passes
    its console's, which -q silences.
    """
    started = time.monotonic()
    codec = make_codec(options.compression, options.effective_level, options.block_size)
    processors = options.processors or usable_cpus()
    if processors < 1:
        raise ImageError(f"processors {processors}: must be at least 1")
    epoch = _source_date_epoch()
    src_b = os.fsencode(os.path.abspath(src))
    image_b = os.fsencode(os.path.abspath(image))
    check_target(image_b)
    old = _open_old(reuse, codec, say) if reuse is not None else None
    try:
        return _pack(src_b, image_b, options, codec, processors, epoch, old, started, say)
    finally:
        if old is not None:
            old.close()


def _open_old(path: os.PathLike | str, codec: Codec, say: Say) -> OldImage | None:
    """The old image to copy blocks from, or None after one line saying why it cannot serve."""
    from condainer.fs.writer.reuse import open_old_image  # the reader, only for a re-pack

    old, why = open_old_image(path, codec)
    if old is None:
        say(f"reuse: {why}: packing without it")
    return old


def _report_reuse(old: OldImage, processors: int, say: Say) -> Callable[[BlockPipeline, DataWriter], None]:
    """What a re-pack says once its data is written: what was copied and what that saved."""

    def report(pipeline: BlockPipeline, data: DataWriter) -> None:
        copied = pipeline.copied_bytes
        line = (
            f"reuse: copied {data.copied_files()} files' data ({human_bytes(copied)},"
            f" {pipeline.copied_blocks} blocks) from {printable(os.fsencode(old.path))}"
        )
        if pipeline.compressed_bytes:
            rate = pipeline.compressed_bytes / max(pipeline.compress_seconds, 1e-9)
            saved = copied / rate
            line += f", about {saved:.1f} s of compression saved ({saved / processors:.1f} s on {processors} threads)"
        if old.damaged:
            line += f"; {old.damaged} of its blocks did not read back and were compressed anew"
        say(line)

    return report


def _pack(src_b: bytes, image_b: bytes, options: PackOptions, codec: Codec, processors: int,
          epoch: int | None, old: OldImage | None, started: float, say: Say) -> PackStats:
    shown = printable(image_b)
    with signals_interrupt():
        try:
            fd, tmp = temporary_beside(image_b, 0o644)
        except OSError as exc:
            raise ImageError(f"cannot create {shown}: {exc.strerror}") from exc
        try:
            with open(fd, "wb", buffering=1 << 20) as out, _collector_paused():
                skip = {(st.st_dev, st.st_ino) for st in [os.fstat(out.fileno()), _lstat(image_b)] if st}
                scanner = Scanner(src_b, skip)
                progress = Progress("pack") if options.progress else None

                def scanned(tree: Tree) -> None:
                    if progress:
                        progress.close()  # every file is read: end its line before any message
                    _check_tree(tree, src_b, options.all_root, epoch, say)

                try:
                    reused = _report_reuse(old, processors, say) if old is not None else None
                    counts = write_image(
                        out, scanner, codec, processors, options.all_root, epoch, progress, scanned, old, reused
                    )
                finally:
                    if progress:
                        progress.close()
                tree = scanner.tree
                out.flush()
                os.fsync(out.fileno())
                size = out.tell()
            check_target(image_b)  # again: it may have been put there while we packed
            os.rename(tmp, image_b)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, ImageError):
                raise
            if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, or a signal of signals_interrupt
                raise interrupted(shown) from None
            if isinstance(exc, OSError):
                reason = exc.strerror or str(exc)
                raise ImageError(f"cannot write {shown}: {reason}") from exc
            raise
    return PackStats(
        files=tree.files,
        dirs=tree.dirs,
        inodes=counts,
        bytes_in=tree.bytes_in,
        image_size=size,
        seconds=time.monotonic() - started,
    )


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while the tree is scanned and written.

    A pack allocates many objects that live until the end (the tree is typed arrays now, but dicts of
    rare fields, block lists and the fragment table remain), and every allocation can start a
    collection that walks them all again and frees nothing: with an object per entry this was about
    8% of the main process on 100k small files (perf). Reference counting still frees everything
    else at once; whatever the pack leaves in cycles is collected once it is back on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def interrupted(image: str) -> ImageError:
    """What both backends report for Ctrl-C, SIGTERM or SIGHUP during a pack: exit 130, as cnd
    reports every other interruption (errors.run_reporting_errors)."""
    return ImageError(f"pack of {image} interrupted: no image written", exit_code=130)


_KINDS = {
    stat.S_IFLNK: "symbolic link",
    stat.S_IFDIR: "directory",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
}


def check_target(image: os.PathLike | str | bytes) -> None:
    """Refuse an IMAGE path that exists and is not a regular file (lstat: a symlink is not followed).

    The image is renamed over IMAGE at the end, and a rename replaces whatever has that name: as root,
    ``cnd image pack src /dev/null`` would turn /dev/null into a regular file. Replacing an earlier
    image (a regular file) is what packing again means, so that stays allowed.
    """
    path = os.fsencode(image)
    st = _lstat(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "special file")
        raise ImageError(f"{printable(path)} exists and is a {kind}, not an image: refusing to replace it")


def _check_tree(tree: Tree, src: bytes, all_root: bool, epoch: int | None, say: Say) -> None:
    """Refuse what squashfs cannot store (too many ids, mtimes out of range); name what it leaves out."""
    ids = 0 if all_root else len(tree.ids())
    if ids > fmt.MAX_IDS:
        raise ImageError(
            f"{ids} distinct uids and gids in {printable(src)}: squashfs stores"
            f" at most {fmt.MAX_IDS} (--all-root stores every file as root's)"
        )
    _check_mtimes(tree, epoch)
    if tree.skipped_xattrs:
        names = b", ".join(sorted(tree.skipped_xattrs)).decode(errors="replace")
        say(f"pack: xattrs squashfs cannot store were left out: {names}")


def _check_mtimes(tree: Tree, epoch: int | None) -> None:
    """Refuse mtimes squashfs cannot store (u32 seconds), unless SOURCE_DATE_EPOCH clamps them.

    mksquashfs 4.5.1 silently wraps them modulo 2^32 (1969 becomes 2106, 2200 becomes 2063);
    clamping would be silent too, so the user gets one line naming the file instead.
    """
    bad = [e for e in tree.odd_mtimes if tree.mtime[e] < 0 or epoch is None]
    if not bad:
        return
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    raise ImageError(
        f"{printable(tree.path(bad[0]))}{more}: mtime {_utc(tree.mtime[bad[0]])} is outside what squashfs stores"
        " (1970-01-01 to 2106-02-07 UTC); set it with touch, or SOURCE_DATE_EPOCH to clamp later ones"
    )


def _utc(seconds: int) -> str:
    try:
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):
        return f"{seconds} s"


def _lstat(path: bytes) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise
