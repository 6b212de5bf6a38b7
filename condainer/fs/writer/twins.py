"""Which earlier file has the same content: the duplicate index of data.py, a few dozen bytes a file.

A dict keyed by ``(size, sha256 digest)`` costs about 250 bytes per file (the tuple, the digest
object, the size int, the dict slot), and on trees of small files nearly every file is a candidate.
This index keeps the same key in typed arrays instead: per candidate its size (8 bytes), its digest
(32 bytes, all of it, so only identical digests of identical sizes match, exactly as the dict did),
its data record (4 bytes), and a slot in an open-addressing table (4 bytes, at most half full).
The table starts small and doubles: which sizes recur is only known as the tree is listed.
"""

from __future__ import annotations

from array import array

DIGEST = 32  # sha256


class _OpenTable:
    """Open addressing over rows kept in typed arrays by a subclass: a slot holds row + 1 (0 is
    empty), and the table is kept at most half full. Subclasses search it (a few lines, on the hot
    path) and say where a row hashes to (``_row_hash``, used only when the table grows)."""

    def __init__(self) -> None:
        self._slots = array("I", bytes(4 * 8))
        self._mask = 7
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    def _row_hash(self, row: int) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def _taken(self, slot: int) -> None:
        """The row just appended goes into ``slot`` (empty, found by the search)."""
        self._rows += 1
        self._slots[slot] = self._rows
        if 2 * self._rows > len(self._slots):
            self._grow()

    def _grow(self) -> None:
        """Twice as many slots, every row placed again."""
        self._slots = slots = array("I", bytes(8 * len(self._slots)))
        self._mask = mask = len(slots) - 1
        for row in range(self._rows):
            slot = self._row_hash(row) & mask
            while slots[slot]:
                slot = (slot + 1) & mask
            slots[slot] = row + 1


class TwinIndex(_OpenTable):
    """(size, digest) -> data record number of the first file seen with them."""

    def __init__(self) -> None:
        super().__init__()
        self._sizes = array("Q")
        self._digests = bytearray()
        self._records = array("I")

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
        self._taken(slot)
        return record

    def _row_hash(self, row: int) -> int:
        return hash(bytes(self._digests[row * DIGEST : (row + 1) * DIGEST])) ^ self._sizes[row]


HASHED = -1  # FirstOfSize: every file of this size so far is in the TwinIndex


class FirstOfSize(_OpenTable):
    """size -> the first file seen with it, until a second one comes: only then are files hashed.

    The tree is written while it is still being listed, so which sizes recur is not known in advance.
    A file whose size is new is stored without hashing and remembered here (its data record, entry and
    ctime); when a second file of that size arrives, the first is read again and hashed, and from then
    on that size is HASHED. The twin index thus sees the same files in the same order as if every
    repeated size had been known from the start, so the same files are merged. About 32 bytes per
    distinct size.
    """

    def __init__(self) -> None:
        super().__init__()
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
        self._taken(slot)
        return None

    def _row_hash(self, row: int) -> int:
        return hash(self._sizes[row])
