"""Which earlier file has the same content: the duplicate index of data.py, a few dozen bytes a file.

A dict keyed by ``(size, sha256 digest)`` costs about 250 bytes per file (the tuple, the digest
object, the size int, the dict slot), and on trees of small files nearly every file is a candidate.
This index keeps the same key in typed arrays instead: per candidate its size (8 bytes), its digest
(32 bytes, all of it, so only identical digests of identical sizes match, exactly as the dict did),
its data record (4 bytes), and a slot in an open-addressing table (4 bytes, at most half full).
"""

from __future__ import annotations

from array import array

DIGEST = 32  # sha256


class TwinIndex:
    """(size, digest) -> data record number of the first file seen with them."""

    def __init__(self) -> None:
        self._slots = array("I", bytes(4 * 1024))  # row + 1, 0 = empty; a power of two long
        self._sizes = array("Q")
        self._digests = bytearray()
        self._records = array("I")

    def __len__(self) -> int:
        return len(self._records)

    def find_or_add(self, size: int, digest: bytes, record: int) -> int:
        """The record of an earlier file with this size and digest; else remember ``record`` as the
        first such file and return it."""
        slots = self._slots
        mask = len(slots) - 1
        slot = (int.from_bytes(digest[:8], "little") ^ size) & mask
        while row := slots[slot]:
            row -= 1
            start = row * DIGEST
            if self._sizes[row] == size and self._digests[start : start + DIGEST] == digest:
                return self._records[row]
            slot = (slot + 1) & mask
        self._sizes.append(size)
        self._digests += digest
        self._records.append(record)
        slots[slot] = len(self._records)
        if 2 * len(self._records) > len(slots):
            self._grow()
        return record

    def _grow(self) -> None:
        """Twice as many slots, every row placed again."""
        slots = array("I", bytes(8 * len(self._slots)))
        mask = len(slots) - 1
        digests = self._digests
        for row, size in enumerate(self._sizes):
            start = row * DIGEST
            slot = (int.from_bytes(digests[start : start + 8], "little") ^ size) & mask
            while slots[slot]:
                slot = (slot + 1) & mask
            slots[slot] = row + 1
        self._slots = slots
