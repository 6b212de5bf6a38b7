"""Extended attributes ("Extended Attribute Table" in doc/format.adoc), read per inode on demand."""

from __future__ import annotations

from condainer.fs import format as fmt
from condainer.fs.reader.damaged import DamagedImage
from condainer.fs.reader.inodes import Inode
from condainer.fs.reader.metadata import MetadataReader


class XattrTable(MetadataReader):
    """The xattr id table (located at open) and the key/value pairs it points at."""

    _xattr_start: int
    _xattr_id_index: list[int]
    _xattr_ids: int

    def _read_xattr_header(self) -> tuple[int, list[int], int]:
        """(start of the key/value table, xattr id index, number of ids); zeros without xattrs."""
        start = self.sb.xattr_id_table_start
        if start == fmt.NO_TABLE:
            return 0, [], 0
        header = fmt.XATTR_TABLE_HEADER
        table_start, ids, _ = header.unpack(self._pread(start, header.size, "xattr id table header"))
        if table_start >= self.sb_end:
            raise DamagedImage("xattr table starts beyond the end of the image")
        index = self._read_index(start + header.size, ids * fmt.XATTR_ID_ENTRY.size, "xattr id table")
        return table_start, index, ids

    def xattrs(self, node: Inode) -> dict[bytes, bytes]:
        """The inode's extended attributes, full names (``user.x``) to values, empty values kept."""
        if node.xattr == fmt.NO_XATTR:
            return {}
        what = f"inode {node.ino} xattrs"
        ref, count, size = self._table_entry(self._xattr_id_index, node.xattr, fmt.XATTR_ID_ENTRY, "xattr id table")
        if count > 65536 or size > 1 << 26:
            raise DamagedImage(f"{what}: implausible count {count} or size {size}")
        pos = self._xattr_start + (ref >> 16)
        offset = ref & 0xFFFF
        if pos >= self.sb_end:
            raise DamagedImage(f"{what}: outside the xattr table")
        out: dict[bytes, bytes] = {}
        for _ in range(count):
            raw, pos, offset = self._meta_read(pos, offset, 4, what)
            ktype, nsize = fmt.XATTR_KEY.unpack(raw)
            prefix = fmt.XATTR_PREFIX_OF_ID.get(ktype & 0xFF)
            if prefix is None:
                raise DamagedImage(f"{what}: unknown prefix id {ktype & 0xFF}")
            name, pos, offset = self._meta_read(pos, offset, nsize, what)
            raw, pos, offset = self._meta_read(pos, offset, 4, what)
            (vsize,) = fmt.U32.unpack(raw)
            if ktype & fmt.XATTR_VALUE_OUT_OF_LINE:
                if vsize != 8:
                    raise DamagedImage(f"{what}: out-of-line value reference of {vsize} bytes")
                raw, pos, offset = self._meta_read(pos, offset, 8, what)
                (vref,) = fmt.U64.unpack(raw)
                vpos = self._xattr_start + (vref >> 16)
                raw, vpos, voff = self._meta_read(vpos, vref & 0xFFFF, 4, what)
                (vsize,) = fmt.U32.unpack(raw)
                if vsize > 1 << 16:
                    raise DamagedImage(f"{what}: value of {vsize} bytes")
                value, _, _ = self._meta_read(vpos, voff, vsize, what)
            else:
                if vsize > 1 << 16:
                    raise DamagedImage(f"{what}: value of {vsize} bytes")
                value, pos, offset = self._meta_read(pos, offset, vsize, what)
            out[prefix + name] = value
        return out
