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
    """(size, digest) -> data record number of the first file seen with them.

    ``expected``: how many files will be looked up at most; the table is sized for them at once, so
    it never has to grow while files are read.
    """

    def __init__(self, expected: int = 0) -> None:
        slots = 8
        while slots < 2 * expected:
            slots *= 2
        self._slots = array("I", bytes(4 * slots))  # row + 1, 0 = empty
        self._mask = slots - 1
        self._limit = slots // 2  # rows that fit before the table grows
        self._rows = 0
        self._sizes = array("Q")
        self._digests = bytearray()
        self._records = array("I")

    def __len__(self) -> int:
        return self._rows

    def find_or_add(self, size: int, digest: bytes, record: int) -> int:
        """The record of an earlier file with this size and digest; else remember ``record`` as the
        first such file and return it."""
        slots, mask = self._slots, self._mask
        # Where a key sits only decides how long the search is, never what it finds: any hash will do.
        slot = (hash(digest) ^ size) & mask
        while row := slots[slot]:
            row -= 1
            if self._sizes[row] == size and self._digests[row * DIGEST : (row + 1) * DIGEST] == digest:
                return self._records[row]
            slot = (slot + 1) & mask
        self._sizes.append(size)
        self._digests += digest
        self._records.append(record)
        self._rows += 1
        slots[slot] = self._rows
        if self._rows > self._limit:
            self._grow()
        return record

    def _grow(self) -> None:
        """Twice as many slots, every row placed again (only when more files came than expected)."""
        self._slots = slots = array("I", bytes(8 * len(self._slots)))
        self._mask = mask = len(slots) - 1
        self._limit = len(slots) // 2
        for row, size in enumerate(self._sizes):
            slot = (hash(bytes(self._digests[row * DIGEST : (row + 1) * DIGEST])) ^ size) & mask
            while slots[slot]:
                slot = (slot + 1) & mask
            slots[slot] = row + 1
