"""The id, fragment and export tables ("Id Table", "Fragment Table", "Export Table").

The id table is small and read whole at open; the fragment and export tables are read an entry at a
time, through the metadata block cache, when a file's tail or an inode number is asked for.
"""

from __future__ import annotations

from collections.abc import Iterator

from condainer.fs import format as fmt
from condainer.fs.reader.damaged import DamagedImage
from condainer.fs.reader.metadata import MetadataReader


class LookupTables(MetadataReader):
    """uid/gid values, fragment block locations and inode references by number."""

    _fragment_index: list[int]

    def _read_id_table(self) -> list[int]:
        raw = self._read_lookup_table(self.sb.id_table_start, self.sb.id_count, 4, "id table")
        return [v for (v,) in fmt.U32.iter_unpack(raw)]

    def _read_fragment_index(self) -> list[int]:
        return self._read_index(
            self.sb.fragment_table_start, self.sb.fragments * fmt.FRAGMENT_ENTRY.size, "fragment table"
        )

    def fragment(self, n: int) -> tuple[int, int]:
        """(start, size word) of fragment block N."""
        if n >= self.sb.fragments:
            raise DamagedImage(f"fragment {n} does not exist ({self.sb.fragments} fragments)")
        start, size, _ = self._table_entry(self._fragment_index, n, fmt.FRAGMENT_ENTRY, "fragment table")
        return start, size

    def export_refs(self) -> Iterator[tuple[int, int]]:
        """(inode number, inode reference) from the export table, if the image has one."""
        start = self.sb.export_table_start
        if start == fmt.NO_TABLE:
            return
        index = self._read_index(start, self.sb.inodes * fmt.U64.size, "export table")
        for ino in range(1, self.sb.inodes + 1):
            (ref,) = self._table_entry(index, ino - 1, fmt.U64, "export table")
            yield ino, ref
