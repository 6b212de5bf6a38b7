"""Directory listings ("Directory Table" and "Directory Index" in doc/format.adoc).

A listing is runs of entries, each run behind a header naming one inode metadata block and a base
inode number. A new run starts when 256 entries are reached (the kernel rejects more), when the
entry's inode lives in another inode metadata block, when its inode number is more than +-32767 away
from the base, or when the listing has moved on into the next directory metadata block. That last
kind of run also gets a directory index entry, so the kernel's lookup in a large directory jumps to
the right metadata block instead of scanning from the start.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import NamedTuple

from condainer.fs import format as fmt
from condainer.fs.writer.metablock import MetadataWriter


class DirEntry(NamedTuple):
    """One name in a listing. A tuple, not a dataclass: one is built per entry of the tree, and a
    frozen dataclass costs several times more to construct."""

    name: bytes  # raw bytes, 1..256 long, no "/" or NUL
    inode_ref: int  # (inode metadata block << 16) | offset
    inode_number: int
    basic_type: int  # the entry records the basic type even for extended inodes


@dataclasses.dataclass
class Listing:
    """Where a written listing lives: what the directory inode records."""

    start_block: int  # relative to the directory table
    start_offset: int
    size: int  # bytes of headers and entries (the inode stores size + 3)
    index: list[bytes]  # packed directory index entries (extended inodes only)


def write_listing(mw: MetadataWriter, entries: Iterable[DirEntry]) -> Listing:
    """Write one directory's sorted entries into the directory table stream.

    Plain tuples in DirEntry's order will do (image.py passes those). Each entry is packed as it
    comes, since its run's base is fixed when the run starts; the run's header goes in front of
    them when the run ends.
    """
    start_block, start_offset = mw.position()
    listing_start = pos = mw.uncompressed_size
    pack = fmt.DIR_ENTRY.pack
    index: list[bytes] = []
    run = bytearray()  # the current run's entries, packed
    count = run_block = run_base = 0
    run_meta = 0  # directory metadata block number (uncompressed count) holding the run's header
    run_crossed = False  # the run starts in a later metadata block than the one before: indexed
    run_first = b""  # the run's first name, for its index entry

    def flush() -> None:
        if run_crossed:
            index.append(
                fmt.DIR_INDEX.pack(mw.uncompressed_size - listing_start, mw.position()[0], len(run_first) - 1)
                + run_first
            )
        mw.write(fmt.DIR_HEADER.pack(count - 1, run_block, run_base) + run)

    for name, ref, number, btype in entries:
        if not 1 <= len(name) <= fmt.MAX_NAME:
            raise ValueError(f"bad name length {len(name)}")
        block = ref >> 16
        crossed = count > 0 and pos // fmt.METADATA_SIZE != run_meta
        if (
            not count
            or count == fmt.DIR_MAX_RUN
            or block != run_block
            or not -32768 <= number - run_base <= 32767
            or crossed
        ):
            if count:
                flush()
            run = bytearray()
            count, run_block, run_base, run_first = 0, block, number, name
            run_meta = pos // fmt.METADATA_SIZE
            run_crossed = crossed
            pos += fmt.DIR_HEADER.size
        run += pack(ref & 0xFFFF, number - run_base, btype, len(name) - 1)
        run += name
        count += 1
        pos += fmt.DIR_ENTRY.size + len(name)
    if count:
        flush()
    return Listing(start_block, start_offset, mw.uncompressed_size - listing_start, index)
