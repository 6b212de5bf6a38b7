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


HASHED = -1  # FirstOfSize: every file of this size so far is in the TwinIndex


class FirstOfSize:
    """size -> the first file seen with it, until a second one comes: only then are files hashed.

    The tree is written while it is still being listed, so which sizes recur is not known in advance.
    A file whose size is new is stored without hashing and remembered here (its data record, entry and
    ctime); when a second file of that size arrives, the first is read again and hashed, and from then
    on that size is HASHED. The twin index thus sees the same files in the same order as if every
    repeated size had been known from the start, so the same files are merged. About 32 bytes per
    distinct size, in arrays (see TwinIndex).
    """

    def __init__(self) -> None:
        self._slots = array("I", bytes(4 * 8))  # row + 1, 0 = empty
        self._mask = 7
        self._sizes = array("Q")
        self._records = array("q")  # data record of the first file, or HASHED
        self._entries = array("I")  # its tree entry, to read it again
        self._ctimes = array("q")  # its st_ctime_ns when it was stored: it must not have changed since

    def first(self, size: int, record: int, entry: int, ctime_ns: int) -> tuple[int, int, int] | None:
        """For a file about to be stored: None if its size is new (it is remembered as the first);
        else (record, entry, ctime_ns) of the first file of this size, whose record is HASHED once
        it has been hashed (the size is HASHED from now on: the caller hashes that file if needed)."""
        slots, mask, sizes = self._slots, self._mask, self._sizes
        slot = hash(size) & mask
        while row := slots[slot]:
            row -= 1
            if sizes[row] == size:
                first = (self._records[row], self._entries[row], self._ctimes[row])
                self._records[row] = HASHED
                return first
            slot = (slot + 1) & mask
        sizes.append(size)
        self._records.append(record)
        self._entries.append(entry)
        self._ctimes.append(ctime_ns)
        slots[slot] = len(sizes)
        if 2 * len(sizes) > len(slots):
            self._grow()
        return None

    def _grow(self) -> None:
        """Twice as many slots, every size placed again."""
        self._slots = slots = array("I", bytes(8 * len(self._slots)))
        self._mask = mask = len(slots) - 1
        for row, size in enumerate(self._sizes):
            slot = hash(size) & mask
            while slots[slot]:
                slot = (slot + 1) & mask
            slots[slot] = row + 1
