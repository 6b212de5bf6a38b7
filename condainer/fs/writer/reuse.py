"""The previous image as a source of compressed blocks: what a re-pack copies instead of compressing.

squashfs stores no checksums, so whether an old block holds what the new pack is about to compress
is decided by content alone: a compression thread reads the old compressed bytes, decompresses
them and compares them with the new block (pipeline.py); only an exact match is copied, as it was.
A damaged, truncated or changed old image therefore costs at most the time of looking: nothing in
it is copied unless it decompresses to exactly the new bytes.

Which old block to look at is found from the old image's inode table, read once at the start:
- a file with full blocks: an old file of the same size (its block list); when several old files
  share that size, the one whose first stored block equals the new first block;
- a fragment block: an old fragment block with the same length made of tails of the same lengths
  (fragments.py sets fragment boundaries by content, so an unchanged run of files gives the same
  block again).

Copies are only worth it, and only byte-identical to a fresh pack, when the old image was
compressed the same way: same compressor, options (level) and block size; otherwise nothing is
looked up. The index keeps, per old file of at least one block, its size, start and block sizes
(about 200 bytes and 4 per block), and per old fragment block its start and size word under a key
(about 80 bytes); files smaller than a block cost nothing once the index is built.
"""

from __future__ import annotations

import itertools
import os
import stat
import struct
import sys
from array import array

from condainer.errors import ImageError
from condainer.fs import format as fmt
from condainer.fs.compression import BY_ID, Codec
from condainer.fs.reader import DamagedImage, SquashfsReader
from condainer.fs.writer.pipeline import Verify
from condainer.fs.writer.source import SourceError, read_exactly

_OFFSET_BITS = 21  # fragment offsets and tail lengths are below the block size, at most 1 MiB
MAX_TRIES = 4  # old fragment blocks looked at for one new one (each costs a decompression)


class OldImage:
    """An old image opened for re-packing; ``open_old_image`` makes one or says why it cannot."""

    def __init__(self, reader: SquashfsReader) -> None:
        self.path = reader.path
        self._reader = reader
        self._fd = reader._fd
        self._end = reader.sb.bytes_used
        self._bs = reader.sb.block_size
        self._compression_id = reader.sb.compression_id
        self._by_size: dict[int, list[tuple[int, array]]] = {}  # size -> (start, block words) per file
        # key -> the row of the fragment block with that key, or a tuple of rows; per row (one per
        # fragment block indexed, not per block the superblock claims) its number, start, size word
        self._fragments: dict[int, int | tuple[int, ...]] = {}
        self._fragment_number = array("I")
        self._fragment_start = array("Q")
        self._fragment_word = array("I")
        self._last_fragment = -1  # the old fragment block proposed last: the next one is likely next
        self.damaged = 0  # old blocks that did not decompress (counted by the threads, for the report)

    def close(self) -> None:
        self._reader.close()

    # --- lookups, by the thread that reads the new files ---------------------------------------

    def blocks_of(self, size: int, fd: int, whole: bytes | None) -> list[tuple[int, int]] | None:
        """(position, size word) of each full block of the old file to compare a new file of
        ``size`` bytes with (open at ``fd``; ``whole``: its content if read already), or None."""
        candidates = self._by_size.get(size)
        if not candidates:
            return None
        full = size // self._bs
        if len(candidates) > 1:
            candidates = [c for c in candidates if self._first_block_matches(c, full, fd, whole)] or candidates[:1]
        start, words = candidates[0]
        starts = itertools.accumulate((w & fmt.DATA_SIZE_MASK for w in words[:full]), initial=start)
        return list(zip(starts, words[:full], strict=False))  # starts has one more: the end

    def _first_block_matches(self, candidate: tuple[int, array], full: int, fd: int, whole: bytes | None) -> bool:
        """Whether the candidate's first stored block is the new file's block there: several old
        files have this size, and the wrong one would make every block a miss."""
        start, words = candidate
        bs = self._bs
        i = next((i for i, word in enumerate(words[:full]) if word), None)
        if i is None:
            return False
        word = words[i]
        position = start + sum(w & fmt.DATA_SIZE_MASK for w in words[:i])
        try:
            new = whole[i * bs : (i + 1) * bs] if whole is not None else read_exactly(fd, bs, i * bs)
        except SourceError:
            return False
        return self.verifier()(new, position, word) is not None

    def fragment(self, block: bytes, lengths: list[int]) -> tuple[tuple[int, int], ...] | None:
        """(position, size word) of the old fragment blocks that may hold exactly ``block``, made
        of tails of ``lengths`` in this order, likeliest first; None when there is none.

        Tails of equal lengths are common (files of one size in many packages), so several old
        blocks may share the key; the one after the block proposed last comes first, as an
        unchanged run of files comes in the old order, then the nearest ones (a few at most)."""
        found = self._fragments.get(hash((len(block), *lengths)))
        if found is None:
            return None
        numbers = self._fragment_number
        if found.__class__ is int:
            found = (found,)
        else:
            after = self._last_fragment + 1
            found = sorted(found, key=lambda row: abs(numbers[row] - after))[:MAX_TRIES]
        self._last_fragment = numbers[found[0]]
        starts, words = self._fragment_start, self._fragment_word
        return tuple((starts[row], words[row]) for row in found)

    # --- checks, by the compression threads ---------------------------------------------------

    def verifier(self) -> Verify:
        """A function for one thread: (new block, old position, old size word) -> the old bytes if
        they decompress to exactly the new block, else None. Reads with pread: threads share the
        descriptor, never a file position."""
        decompress = BY_ID[self._compression_id].decompressor()
        fd, end, bs = self._fd, self._end, self._bs

        def verify(block: bytes, position: int, word: int) -> bytes | None:
            size = word & fmt.DATA_SIZE_MASK
            if position + size > end or size > len(block):
                return None
            try:
                old = os.pread(fd, size, position)
            except OSError:
                self.damaged += 1
                return None
            if len(old) != size:
                self.damaged += 1
                return None
            if word & fmt.DATA_UNCOMPRESSED:
                return old if old == block else None
            nonlocal decompress
            try:
                data = decompress(old, bs)
            except Exception:  # every codec has its own error: all mean damage here
                self.damaged += 1
                decompress = BY_ID[self._compression_id].decompressor()  # a failed one may be broken
                return None
            return old if data == block else None

        return verify

    # --- building the index ---------------------------------------------------------------------

    def index(self) -> None:
        """Read the inode table once: block lists of files of a block or more, tails per fragment."""
        spans = array("Q")  # fragment << 42 | offset << 21 | tail length, per file with a tail
        bs = self._bs
        for size, start, fragment, offset, words in _file_inodes(self._reader):
            if words and any(words):
                self._by_size.setdefault(size, [])
                if all(start != s for s, _ in self._by_size[size]):  # twins share their blocks
                    self._by_size[size].append((start, words))
            if fragment != fmt.NO_FRAGMENT and size % bs:
                spans.append(fragment << 2 * _OFFSET_BITS | offset << _OFFSET_BITS | size % bs)
        self._index_fragments(sorted(spans))  # for a moment, about 40 bytes per file with a tail

    def _index_fragments(self, spans: list[int]) -> None:
        """Each fragment block whose tails lie back to back from offset 0, under the key fragment()
        computes for a new block: its length and its tails' lengths. ``spans`` is sorted; twins
        (and hard links) share a span, which counts once."""
        mask = (1 << _OFFSET_BITS) - 1
        reader = self._reader
        for fragment, group in itertools.groupby(spans, key=lambda s: s >> 2 * _OFFSET_BITS):
            lengths, end, previous = [], 0, -1
            for span in group:
                if span == previous:
                    continue
                previous = span
                offset, length = (span >> _OFFSET_BITS) & mask, span & mask
                if offset != end:
                    break  # overlapping or with gaps: no new block is laid out like it
                lengths.append(length)
                end += length
            else:
                if fragment >= reader.sb.fragments:
                    raise DamagedImage(f"fragment {fragment} does not exist")
                start, word = reader.fragment(fragment)
                row = len(self._fragment_number)
                self._fragment_number.append(fragment)
                self._fragment_start.append(start)
                self._fragment_word.append(word)
                key = hash((end, *lengths))
                found = self._fragments.get(key)
                if found is None:
                    self._fragments[key] = row
                else:
                    self._fragments[key] = (*found, row) if found.__class__ is tuple else (found, row)


def open_old_image(path: os.PathLike | str, codec: Codec) -> tuple[OldImage | None, str]:
    """The old image at ``path`` indexed for a pack with ``codec``, or (None, why not: one line)."""
    shown = os.fsdecode(path)
    if codec.raw:
        return None, "nothing is compressed with --compression none"
    try:
        st = os.stat(path)
    except OSError as exc:
        return None, f"{shown}: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return None, f"{shown} is not a regular file"
    try:
        # Read front to back once: a cache would only hold what is never asked for again.
        reader = SquashfsReader(path, metadata_cache_bytes=64 << 10, cache_bytes=0)
    except OSError as exc:
        return None, f"{shown}: {exc.strerror or exc}"
    except ImageError as exc:
        reason = exc.message if hasattr(exc, "message") else str(exc)
        return None, reason if shown in reason else f"{shown}: {reason}"
    try:
        mismatch = _settings_mismatch(reader, codec)
        if mismatch:
            reader.close()
            return None, f"{shown} was packed with {mismatch}"
        old = OldImage(reader)
        old.index()
    except (ImageError, ValueError, IndexError, OverflowError, struct.error, OSError) as exc:
        reader.close()
        return None, f"{shown} is damaged: {getattr(exc, 'message', None) or exc}"
    return old, ""


def _settings_mismatch(reader: SquashfsReader, codec: Codec) -> str:
    """What differs between the old image's compression settings and ``codec`` ('' if nothing)."""
    sb = reader.sb
    mine = f"{codec.name} {codec.level if codec.level is not None else ''}".strip()
    if sb.compression_id != codec.squashfs_id:
        return f"{sb.compression}, this pack uses {mine}"
    if sb.block_size != codec.block_size:
        return f"block size {sb.block_size}, this pack uses {codec.block_size}"
    if sb.flags & (fmt.FLAG_UNCOMPRESSED_DATA | fmt.FLAG_UNCOMPRESSED_FRAGMENTS):
        return "data stored uncompressed"
    options = b""
    if sb.flags & fmt.FLAG_COMPRESSOR_OPTIONS:
        (header,) = fmt.U16.unpack(reader._pread(fmt.SUPERBLOCK_SIZE, 2, "compressor options"))
        options = reader._pread(fmt.SUPERBLOCK_SIZE + 2, header & fmt.METADATA_SIZE_MASK, "compressor options")
    if options != codec.options_block():
        spec = BY_ID[sb.compression_id]
        try:
            said = spec.describe_options(options) if options else {"level": spec.implied_level}
        except struct.error:
            said = {"options": options.hex()}
        theirs = ", ".join(f"{key} {value}" for key, value in said.items())
        return f"{sb.compression} {theirs}, this pack uses {mine}"
    return ""


class _InodeStream:
    """The inode table's metadata blocks as one stream, read front to back, one block in memory."""

    def __init__(self, reader: SquashfsReader) -> None:
        self._reader = reader
        self._next = reader.sb.inode_table_start
        self._end = reader.sb.directory_table_start
        self._buffer = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        while len(self._buffer) - self._at < n:
            if self._next >= self._end:
                raise DamagedImage("inode table ends inside an inode")
            block, self._next = self._reader.metablock(self._next)
            self._buffer = self._buffer[self._at :] + block
            self._at = 0
        data = self._buffer[self._at : self._at + n]
        self._at += n
        return data


def _file_inodes(reader: SquashfsReader):
    """(size, blocks start, fragment, fragment offset, block size words) of every regular file,
    parsed in table order (no directory is read); DamagedImage where the table makes no sense."""
    stream = _InodeStream(reader)
    take, bs = stream.take, reader.sb.block_size
    for _ in range(reader.sb.inodes):
        itype = fmt.INODE_HEADER.unpack(take(fmt.INODE_HEADER.size))[0]
        if itype in (2, 9):
            if itype == 2:
                start, fragment, offset, size = fmt.FILE_INODE.unpack(take(fmt.FILE_INODE.size))
            else:
                start, size, _, _, fragment, offset, _ = fmt.EXT_FILE_INODE.unpack(take(fmt.EXT_FILE_INODE.size))
            count = size // bs if fragment != fmt.NO_FRAGMENT else -(-size // bs)
            if count * 4 > reader.sb.directory_table_start:
                raise DamagedImage(f"a file of {size} bytes is implausible")
            words = array("I", take(4 * count))
            if sys.byteorder == "big":
                words.byteswap()
            if start + sum(w & fmt.DATA_SIZE_MASK for w in words) > reader.sb.bytes_used:
                raise DamagedImage("a file's blocks run past the end of the image")
            yield size, start, fragment, offset, words
        elif itype == 1:
            take(fmt.DIR_INODE.size)
        elif itype == 8:
            index_count = fmt.EXT_DIR_INODE.unpack(take(fmt.EXT_DIR_INODE.size))[4]
            for _ in range(index_count):
                name_size = fmt.DIR_INDEX.unpack(take(fmt.DIR_INDEX.size))[2]
                take(name_size + 1)
        elif itype in (3, 10):
            target = fmt.SYMLINK_INODE.unpack(take(fmt.SYMLINK_INODE.size))[1]
            if target > fmt.MAX_SYMLINK:
                raise DamagedImage(f"a symlink target of {target} bytes")
            take(target + (4 if itype == 10 else 0))
        elif itype in (4, 5, 11, 12):
            take((fmt.DEV_INODE if itype <= 7 else fmt.EXT_DEV_INODE).size)
        elif itype in (6, 7, 13, 14):
            take((fmt.IPC_INODE if itype <= 7 else fmt.EXT_IPC_INODE).size)
        else:
            raise DamagedImage(f"unknown inode type {itype}")
