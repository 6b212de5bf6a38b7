"""The image, written in format order: write_image, one comment per step (doc/format.adoc "Overview").

superblock placeholder and compressor options | data and fragment blocks (data.py) | inode table
(inodes.py) | directory table (directory.py) | fragment, export, id and xattr tables back to back
(tables.py) | the superblock rewritten at offset 0 | padding to 4 KiB.
"""

from __future__ import annotations

import stat
import time
from array import array
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from condainer.fs import format as fmt
from condainer.fs.compression import Codec
from condainer.fs.progress import Progress
from condainer.fs.writer import inodes
from condainer.fs.writer.data import DataWriter
from condainer.fs.writer.directory import DirEntry, write_listing
from condainer.fs.writer.metablock import MetadataWriter
from condainer.fs.writer.pipeline import BlockPipeline
from condainer.fs.writer.scan import Scanner, Tree
from condainer.fs.writer.tables import IdTable, XattrTable, export_entries, fragment_entries, lookup_table

if TYPE_CHECKING:
    from condainer.fs.writer.reuse import OldImage


def _inode_order(scanner: Scanner) -> Iterator[int]:
    """Every entry number, children before their directory (subdirectories first, then the rest).

    A directory's inode records where its listing is, and the listing records its children's
    inodes, so children are written first; inode numbers follow this order. Each directory is listed
    when the walk first reaches it, so file data flows while the rest of the tree is still unlisted.
    """
    children = scanner.tree.children
    stack: list[tuple[int, bool]] = [(0, False)]
    while stack:
        directory, expanded = stack.pop()
        if expanded:
            yield from (c for c in children[directory] if c not in children)
            yield directory
            continue
        subdirs = scanner.list(directory)
        stack.append((directory, True))
        stack.extend((c, False) for c in reversed(subdirs))


def _dir_entries(tree: Tree, children: range, ref: array, number: array, itype: bytearray) -> list[DirEntry]:
    """A directory's listing entries; a hard link's name points at its group's inode.

    Plain tuples in DirEntry's field order: building a NamedTuple costs several times more, once
    per entry of the tree."""
    names, name_at, owner_of = tree.names, tree.name_at, tree.owner_of
    out = []
    for c in children:
        o = owner_of.get(c, c)
        out.append((names[name_at[c] : name_at[c + 1]], ref[o], number[o], itype[o]))
    return out


def _write_data(
    pipeline: BlockPipeline,
    scanner: Scanner,
    block_size: int,
    progress: Progress | None,
    old: OldImage | None = None,
) -> tuple[array, DataWriter]:
    """Every regular file's data, in inode order, into the pipeline; each directory is listed when
    the walk reaches it, so compression starts with the first files, not after the whole tree is
    listed. Returns (the inode order, where each file's data went). The last blocks may still be
    queued: the caller finishes the pipeline.
    """
    tree = scanner.tree
    mode, size, owner_of, link_count = tree.mode, tree.size, tree.owner_of, tree.link_count
    order = array("I")
    on_file = None
    if progress:

        def on_file(nbytes: int) -> None:
            progress.total_items, progress.total_bytes = tree.files, tree.bytes_in  # found so far
            progress.update(1, nbytes)

    data = DataWriter(pipeline, block_size, tree, on_file, old)
    try:
        stored: set[int] = set()  # owners of several names whose data is stored
        for entry in _inode_order(scanner):
            order.append(entry)
            owner = owner_of.get(entry, entry)
            if not stat.S_ISREG(mode[owner]):
                continue
            if owner in link_count:
                if owner in stored:
                    continue
                stored.add(owner)
            data.add_file(owner, size[owner])
        data.finish()
    finally:
        data.close()
    return order, data


class _Metadata(NamedTuple):
    """The inode and directory tables as built by _write_inodes, and what the other tables need."""

    inodes: MetadataWriter
    directories: MetadataWriter
    ids: IdTable
    xattrs: XattrTable
    export: array  # inode reference per inode number - 1
    root: int  # the root directory's inode reference


def _write_inodes(
    tree: Tree,
    order: array,
    data: DataWriter,
    pipeline: BlockPipeline,
    codec: Codec,
    all_root: bool,
    epoch: int | None,
) -> _Metadata:
    """Number the inodes and write them and the directory listings, children before parents.

    Runs while the pipeline still compresses the last blocks. Only a file with full blocks needs
    them written (its inode lists their sizes): it waits for its own.
    """
    # Inode numbers: one per inode (hard links share), in write order.
    owner_of, link_count, mode, size = tree.owner_of, tree.link_count, tree.mode, tree.size
    number = array("I", bytes(4 * len(tree)))  # per entry; 0 until its inode is numbered
    count = 0
    for entry in order:
        owner = owner_of.get(entry, entry)
        if number[owner] == 0:
            count += 1
            number[owner] = count

    inode_mw, dir_mw = MetadataWriter(codec), MetadataWriter(codec)
    ids, xattrs = IdTable(), XattrTable(codec)
    export = array("Q", bytes(8 * count))
    ref = array("q", [-1]) * len(tree)  # per entry: inode reference once written
    itype = bytearray(len(tree))  # per entry: basic inode type, for directory entries
    record_of, fragment, offset, block_lists = data.record_of, data.fragment, data.offset, data.blocks
    mtimes, uids, gids, xattrs_of, holey_files = tree.mtime, tree.uid, tree.gid, tree.xattrs, tree.holey
    for entry in order:
        owner = owner_of.get(entry, entry)
        if ref[owner] >= 0:
            continue  # a hard link whose inode is already written
        mtime = mtimes[owner]
        if epoch is not None and mtime > epoch:
            mtime = epoch  # and never below 0: _check_mtimes
        uid, gid = (0, 0) if all_root else (uids[owner], gids[owner])
        owner_mode, owner_number = mode[owner], number[owner]
        common = (owner_mode, ids.index(uid), ids.index(gid), mtime, owner_number)
        xattr = xattrs.index(xattrs_of[owner]) if owner in xattrs_of else fmt.NO_XATTR
        btype = inodes.basic_type(owner_mode)
        if btype == fmt.DIR:
            children = tree.children[owner]
            listing = write_listing(dir_mw, _dir_entries(tree, children, ref, number, itype))
            nlink = 2 + sum(1 for c in children if c in tree.children)
            # The root's "parent" is one past the last inode, as mksquashfs writes it: with 0 the
            # kernel lists ".." in the root with inode number 0, which glibc's readdir skips.
            parent = number[tree.parent[owner]] if owner else count + 1
            _, record = inodes.directory(common, listing, nlink, parent, xattr, len(children))
        elif btype == fmt.FILE:
            r = record_of[owner]
            blocks = block_lists.get(r)
            if blocks is None:
                start, packed, sparse = 0, b"", 0
            else:
                if blocks.unplaced:  # some of its blocks are still queued
                    pipeline.write_until(lambda b=blocks: not b.unplaced)
                start, packed, sparse = blocks.start, blocks.blocks.tobytes(), blocks.sparse
            nlink, holey = link_count.get(owner, 1), owner in holey_files
            _, record = inodes.regular(
                common, size[owner], start, packed, fragment[r], offset[r], sparse, nlink, xattr, holey
            )
        else:
            nlink, target, rdev = link_count.get(owner, 1), tree.target.get(owner), tree.rdev.get(owner, 0)
            _, record = inodes.special(btype, common, nlink, xattr, target, rdev)
        ref[owner] = export[owner_number - 1] = inode_mw.append(record)
        itype[owner] = btype
    return _Metadata(inode_mw, dir_mw, ids, xattrs, export, ref[0])


def _write_tables(
    out: BinaryIO, sb: fmt.Superblock, meta: _Metadata, fragments: list[tuple[int, int]], position: int, codec: Codec
) -> int:
    """Write the metadata tables from POSITION on, each one's start (or index) into SB; returns
    where they end."""
    # 5. Inode table, then directory table.
    sb.inode_table = position
    inode_bytes = meta.inodes.finish()
    out.write(inode_bytes)
    position += len(inode_bytes)
    sb.directory_table = position
    dir_bytes = meta.directories.finish()
    out.write(dir_bytes)
    position += len(dir_bytes)

    # 6. Lookup tables back to back: fragment (written even when empty), export, id, xattr.
    #    The kernel checks that each index ends exactly where the next table begins.
    sb.fragment_count = len(fragments)
    for field, entries in (
        ("fragment_table", fragment_entries(fragments)),
        ("export_table", export_entries(meta.export)),
        ("id_table", meta.ids.entries()),
    ):
        blob, index = lookup_table(entries, position, codec)
        setattr(sb, field, index)
        out.write(blob)
        position += len(blob)
    sb.id_count = len(meta.ids)
    if len(meta.xattrs):
        blob, sb.xattr_table = meta.xattrs.write(position)
        out.write(blob)
        position += len(blob)
    return position


def write_image(
    out: BinaryIO,
    scanner: Scanner,
    codec: Codec,
    processors: int,
    all_root: bool,
    epoch: int | None,
    progress: Progress | None,
    scanned: Callable[[Tree], None],
    old: OldImage | None = None,
    reused: Callable[[BlockPipeline, DataWriter], None] | None = None,
) -> int:
    """Write the image body in format order; returns the inode count.

    ``scanned(tree)`` runs once the whole tree is listed, before any metadata is written: it may
    refuse the tree (too many ids, mtimes squashfs cannot store). ``old``: a previous image
    (reuse.OldImage) whose compressed blocks are copied where they hold exactly the new data;
    ``reused(pipeline, data)`` is then told what was copied, once the data is written.
    """
    # 1. Superblock placeholder (rewritten last) and the compressor options block, as an
    #    uncompressed metadata block, only where mksquashfs writes one.
    out.write(bytes(fmt.SUPERBLOCK_SIZE))
    options = codec.options_block()
    if options:
        out.write(fmt.U16.pack(len(options) | fmt.METADATA_UNCOMPRESSED) + options)

    # 2. File data and fragment blocks, while the tree is listed (_write_data); then
    # 3. and 4. inode numbers, inodes and directory listings (_write_inodes), while the compression
    #    threads finish the last blocks (pipeline.BACKLOG_BYTES); the data ends where they end.
    pipeline = BlockPipeline(out, out.tell(), codec, processors, old.verifier if old is not None else None)
    try:
        order, data = _write_data(pipeline, scanner, codec.block_size, progress, old)
        tree = scanner.finish()
        scanned(tree)
        meta = _write_inodes(tree, order, data, pipeline, codec, all_root, epoch)
        position = pipeline.finish()
    finally:
        pipeline.close()
    if reused is not None:
        reused(pipeline, data)
    count = len(meta.export)

    sb = fmt.Superblock(inode_count=count, block_size=codec.block_size, compressor=codec.squashfs_id)
    sb.mkfs_time = epoch if epoch is not None else int(time.time())
    sb.root_inode = meta.root

    # 5. and 6. Inode table, directory table, then the lookup tables (_write_tables).
    position = _write_tables(out, sb, meta, data.fragments.entries, position, codec)

    # 7. Superblock with the final offsets, then padding to a 4 KiB multiple (not in bytes_used).
    sb.bytes_used = position
    sb.flags = (
        fmt.FLAG_DUPLICATES
        | fmt.FLAG_EXPORTABLE
        | fmt.FLAG_ALWAYS_FRAGMENTS
        | codec.uncompressed_flags
        | (fmt.FLAG_COMPRESSOR_OPTIONS if options else 0)
        | (0 if len(meta.xattrs) else fmt.FLAG_NO_XATTRS)
    )
    out.write(bytes(-position % fmt.DEVICE_BLOCK))
    out.flush()
    end = out.tell()
    out.seek(0)
    out.write(sb.pack())
    out.seek(end)
    return count
