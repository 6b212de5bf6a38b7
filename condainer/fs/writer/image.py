"""The image, written in format order: one function, one comment per step (doc/format.adoc "Overview").

superblock placeholder and compressor options | data and fragment blocks (data.py) | inode table
(inodes.py) | directory table (directory.py) | fragment, export, id and xattr tables back to back
(tables.py) | the superblock rewritten at offset 0 | padding to 4 KiB.
"""

from __future__ import annotations

import stat
import time

from condainer import console
from condainer.fs import format as fmt
from condainer.fs.compression import Codec
from condainer.fs.writer import inodes
from condainer.fs.writer.data import DataWriter
from condainer.fs.writer.directory import DirEntry, write_listing
from condainer.fs.writer.metablock import MetadataWriter
from condainer.fs.writer.pipeline import BlockPipeline
from condainer.fs.writer.scan import Entry, Tree
from condainer.fs.writer.tables import IdTable, XattrTable, export_entries, fragment_entries, lookup_table


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


def _dir_entries(children: list[Entry], links: dict[tuple[int, int], Entry]) -> list[DirEntry]:
    """A directory's listing entries; a hard link's name points at its group's inode (Tree.owner,
    inlined: this runs once per entry of the tree)."""
    out = []
    for c in children:
        o = c if c.key is None else links.get(c.key, c)
        out.append(DirEntry(c.name, o.ref, o.inode_number, o.itype))
    return out


def write_image(
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
    links = tree.links
    for entry in order:
        owner = entry if entry.key is None else links.get(entry.key, entry)  # tree.owner, inlined
        if owner.ref >= 0:
            continue  # a hard link whose inode is already written
        mtime = owner.mtime if epoch is None else min(owner.mtime, epoch)  # in range: _check_mtimes
        uid, gid = (0, 0) if all_root else (owner.uid, owner.gid)
        common = (owner.mode, ids.index(uid), ids.index(gid), mtime, owner.inode_number)
        xattr = xattrs.index(owner.xattrs)
        btype = inodes.basic_type(owner.mode)
        if btype == fmt.DIR:
            children = _dir_entries(owner.children, links)
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
