"""pack_tree: a directory -> a squashfs 4.0 image, with no native tools.

The order in which the image is written is ``_write_image``; each step has one module:
scan.py (tree), data.py (blocks, fragments), inodes.py + directory.py (metadata), tables.py (lookup
tables), format.py (superblock). The image goes to a temporary file beside IMAGE and is renamed over
it only when complete, so a failure, Ctrl-C or SIGTERM never leaves a partial image behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import os
import secrets
import stat
import time

from condainer import console
from condainer.errors import ImageError
from condainer.fs import format as fmt
from condainer.fs import inodes
from condainer.fs.compression import Codec, make_codec
from condainer.fs.data import BlockPipeline, DataWriter
from condainer.fs.directory import DirEntry, write_listing
from condainer.fs.metablock import MetadataWriter
from condainer.fs.options import PackOptions
from condainer.fs.scan import Entry, Tree, printable, scan_tree
from condainer.fs.tables import IdTable, XattrTable, export_entries, fragment_entries, lookup_table
from condainer.sysinfo import signals_interrupt, usable_cpus


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


def pack_tree(src: os.PathLike, image: os.PathLike, options: PackOptions) -> PackStats:
    """Pack directory ``src`` into the squashfs image ``image`` (replaced if it exists).

    Raises ImageError (one line) for every expected failure: unreadable input, bad settings, full
    disk, interruption. Nothing is left at ``image`` or beside it unless the pack succeeded.
    """
    started = time.monotonic()
    codec = make_codec(options.compression, options.effective_level, options.block_size)
    processors = options.processors or usable_cpus()
    if processors < 1:
        raise ImageError(f"processors {processors}: must be at least 1")
    epoch = _source_date_epoch()
    src_b = os.fsencode(os.path.abspath(src))
    image_b = os.fsencode(os.path.abspath(image))
    shown = printable(image_b)
    check_target(image_b)
    directory, name = os.path.split(image_b)
    tmp = os.path.join(directory, b"." + name + b"." + secrets.token_hex(6).encode() + b".tmp")
    with signals_interrupt():
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ImageError(f"cannot create {shown}: {exc.strerror}") from exc
        try:
            with open(fd, "wb", buffering=1 << 20) as out:
                skip = {(st.st_dev, st.st_ino) for st in [os.fstat(out.fileno()), _lstat(image_b)] if st}
                tree = scan_tree(src_b, skip)
                if not options.all_root and len(tree.ids) > fmt.MAX_IDS:
                    raise ImageError(
                        f"{len(tree.ids)} distinct uids and gids in {printable(src_b)}: squashfs stores"
                        f" at most {fmt.MAX_IDS} (--all-root stores every file as root's)"
                    )
                _check_mtimes(tree, epoch)
                if tree.skipped_xattrs:
                    names = b", ".join(sorted(tree.skipped_xattrs)).decode(errors="replace")
                    console.info(f"pack: xattrs squashfs cannot store were left out: {names}")
                progress = console.Progress("pack", tree.files, tree.bytes_in) if options.progress else None
                try:
                    counts = _write_image(out, tree, codec, processors, options.all_root, epoch, progress)
                finally:
                    if progress:
                        progress.close()
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


def interrupted(image: str) -> ImageError:
    """What both backends report for Ctrl-C, SIGTERM or SIGHUP during a pack: exit 130, as cli.py
    reports every other interruption."""
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


def _check_mtimes(tree: Tree, epoch: int | None) -> None:
    """Refuse mtimes squashfs cannot store (u32 seconds), unless SOURCE_DATE_EPOCH clamps them.

    mksquashfs 4.5.1 silently wraps them modulo 2^32 (1969 becomes 2106, 2200 becomes 2063);
    clamping would be silent too, so the user gets one line naming the file instead.
    """
    bad = [e for e in tree.odd_mtimes if e.mtime < 0 or epoch is None]
    if not bad:
        return
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    raise ImageError(
        f"{printable(bad[0].path)}{more}: mtime {_utc(bad[0].mtime)} is outside what squashfs stores"
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


def _inode_order(root: Entry) -> list[Entry]:
    """Every entry, children before their directory (subdirectories first, then the rest).

    A directory's inode records where its listing is, and the listing records its children's
    inodes, so children are written first; inode numbers follow this order.
    """
    order: list[Entry] = []
    stack: list[tuple[Entry, bool]] = [(root, False)]
    while stack:
        entry, expanded = stack.pop()
        if expanded:
            order.extend(c for c in entry.children if not c.is_dir)
            order.append(entry)
            continue
        stack.append((entry, True))
        stack.extend((c, False) for c in reversed(entry.children) if c.is_dir)
    return order


def _write_image(
    out,
    tree: Tree,
    codec: Codec,
    processors: int,
    all_root: bool,
    epoch: int | None,
    progress: console.Progress | None,
) -> int:
    """Write the image body in format order; returns the inode count."""
    # 1. Superblock placeholder (rewritten last) and the compressor options block, as an
    #    uncompressed metadata block, only where mksquashfs writes one.
    out.write(bytes(fmt.SUPERBLOCK_SIZE))
    options = codec.options_block()
    if options:
        out.write(fmt.U16.pack(len(options) | fmt.METADATA_UNCOMPRESSED) + options)

    # 2. Inode numbers: one per inode (hard links share), in write order.
    order = _inode_order(tree.root)
    count = 0
    for entry in order:
        owner = tree.owner(entry)
        if owner.inode_number == 0:
            count += 1
            owner.inode_number = count

    # 3. File data and fragment blocks, streamed through the worker pool in a fixed order.
    pipeline = BlockPipeline(out, out.tell(), codec, processors)
    try:
        on_file = (lambda n: progress.update(1, n)) if progress else None
        sizes = (e.size for e in order if stat.S_ISREG(e.mode) and tree.owner(e) is e)
        data = DataWriter(pipeline, codec.block_size, sizes, on_file)
        for entry in order:
            owner = tree.owner(entry)
            if stat.S_ISREG(owner.mode) and owner.data is None:
                owner.data = data.add_file(owner.path, owner.size)
        data.finish()
        position = pipeline.finish()
    finally:
        pipeline.close()

    # 4. Inodes and directory listings, children before parents.
    inode_mw, dir_mw = MetadataWriter(codec), MetadataWriter(codec)
    ids, xattrs = IdTable(), XattrTable(codec)
    export = [0] * count
    for entry in order:
        owner = tree.owner(entry)
        if owner.ref >= 0:
            continue  # a hard link whose inode is already written
        mtime = owner.mtime if epoch is None else min(owner.mtime, epoch)  # in range: _check_mtimes
        uid, gid = (0, 0) if all_root else (owner.uid, owner.gid)
        common = (owner.mode, ids.index(uid), ids.index(gid), mtime, owner.inode_number)
        xattr = xattrs.index(owner.xattrs)
        btype = inodes.basic_type(owner.mode)
        if btype == fmt.DIR:
            children = [
                DirEntry(c.name, tree.owner(c).ref, tree.owner(c).inode_number, tree.owner(c).itype)
                for c in owner.children
            ]
            listing = write_listing(dir_mw, children)
            nlink = 2 + sum(1 for c in owner.children if c.is_dir)
            # The root's "parent" is one past the last inode, as mksquashfs writes it: with 0 the
            # kernel lists ".." in the root with inode number 0, which glibc's readdir skips.
            parent = owner.parent.inode_number if owner.parent is not None else count + 1
            _, record = inodes.directory(common, listing, nlink, parent, xattr, len(children))
        elif btype == fmt.FILE:
            _, record = inodes.regular(common, owner.data, owner.nlink, xattr, owner.holey)
        else:
            _, record = inodes.special(btype, common, owner.nlink, xattr, owner.target, owner.rdev)
        owner.ref = inode_mw.reference()
        owner.itype = btype
        inode_mw.write(record)
        export[owner.inode_number - 1] = owner.ref
        owner.data = None  # block lists are in the inode now; let them go

    sb = fmt.Superblock(inode_count=count, block_size=codec.block_size, compressor=codec.squashfs_id)
    sb.mkfs_time = epoch if epoch is not None else int(time.time())
    sb.root_inode = tree.root.ref

    # 5. Inode table, then directory table.
    sb.inode_table = position
    inode_bytes = inode_mw.finish()
    out.write(inode_bytes)
    position += len(inode_bytes)
    sb.directory_table = position
    dir_bytes = dir_mw.finish()
    out.write(dir_bytes)
    position += len(dir_bytes)

    # 6. Lookup tables back to back: fragment (written even when empty), export, id, xattr.
    #    The kernel checks that each index ends exactly where the next table begins.
    fragments = data.fragments.entries
    sb.fragment_count = len(fragments)
    for field, entries in (
        ("fragment_table", fragment_entries(fragments)),
        ("export_table", export_entries(export)),
        ("id_table", ids.entries()),
    ):
        blob, index = lookup_table(entries, position, codec)
        setattr(sb, field, index)
        out.write(blob)
        position += len(blob)
    sb.id_count = len(ids)
    if len(xattrs):
        blob, sb.xattr_table = xattrs.write(position)
        out.write(blob)
        position += len(blob)

    # 7. Superblock with the final offsets, then padding to a 4 KiB multiple (not in bytes_used).
    sb.bytes_used = position
    sb.flags = (
        fmt.FLAG_DUPLICATES
        | fmt.FLAG_EXPORTABLE
        | fmt.FLAG_ALWAYS_FRAGMENTS
        | codec.uncompressed_flags
        | (fmt.FLAG_COMPRESSOR_OPTIONS if options else 0)
        | (0 if len(xattrs) else fmt.FLAG_NO_XATTRS)
    )
    out.write(bytes(-position % fmt.DEVICE_BLOCK))
    out.flush()
    end = out.tell()
    out.seek(0)
    out.write(sb.pack())
    out.seek(end)
    return count
