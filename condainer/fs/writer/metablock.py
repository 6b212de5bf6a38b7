"""The metadata stream ("Metadata Blocks" in doc/format.adoc): 8 KiB chunks behind a u16 header.

Inodes, directory listings and every lookup table are written through this one writer. Records may
span two chunks, so callers just ``write`` bytes; a reference to where a record starts is
``(block start relative to the stream << 16) | offset in the uncompressed chunk`` and is known the
moment the record begins, because the start of the chunk being filled is fixed by the chunks before.
"""

from __future__ import annotations

from condainer.fs import format as fmt
from condainer.fs.compression import Codec


class MetadataWriter:
    """Accumulates an uncompressed metadata stream and emits finished chunks into memory.

    The finished (compressed) stream is kept in memory: it is small next to file data (tens of bytes
    per inode) and must be written after the data blocks anyway.
    """

    def __init__(self, codec: Codec) -> None:
        self._compress = codec.compressor()
        self._raw = codec.raw
        self._pending = bytearray()
        self._chunks: list[bytes] = []
        self._written = 0  # bytes of finished chunks, headers included
        self._closed = False

    def position(self) -> tuple[int, int]:
        """(start of the chunk being filled, relative to the stream; offset inside it)."""
        return self._written, len(self._pending)

    def reference(self) -> int:
        block, offset = self.position()
        return (block << 16) | offset

    @property
    def uncompressed_size(self) -> int:
        """Bytes written so far, as if the chunks were laid out uncompressed."""
        return len(self._chunks) * fmt.METADATA_SIZE + len(self._pending)

    def append(self, record: bytes) -> int:
        """Write one record; returns its reference (what reference() gave just before)."""
        ref = (self._written << 16) | len(self._pending)
        self.write(record)
        return ref

    def write(self, data: bytes) -> None:
        if self._closed:
            raise RuntimeError("metadata stream already finished")
        self._pending += data
        while len(self._pending) >= fmt.METADATA_SIZE:
            self._emit(bytes(self._pending[: fmt.METADATA_SIZE]))
            del self._pending[: fmt.METADATA_SIZE]

    def _emit(self, chunk: bytes) -> None:
        packed = chunk if self._raw else self._compress(chunk)
        if self._raw or len(packed) >= len(chunk):
            block = fmt.U16.pack(len(chunk) | fmt.METADATA_UNCOMPRESSED) + chunk
        else:
            block = fmt.U16.pack(len(packed)) + packed
        self._chunks.append(block)
        self._written += len(block)

    def finish(self) -> bytes:
        """Flush the last partial chunk and return the whole on-disk stream."""
        if not self._closed:
            if self._pending:
                self._emit(bytes(self._pending))
                self._pending.clear()
            self._closed = True
        return b"".join(self._chunks)

    def chunk_starts(self) -> list[int]:
        """Start of every finished chunk relative to the stream (what lookup-table indexes list)."""
        starts, pos = [], 0
        for chunk in self._chunks:
            starts.append(pos)
            pos += len(chunk)
        return starts
