"""The codec registry: every squashfs compressor condainer knows, described once.

One entry per compressor ("Compression Options" and the superblock's compression id in
squashfs-tools-ng doc/format.adoc) holds what every part needs: the CLI and condainer.yml (name,
levels a user may choose, our default level), the writer (superblock id, options block, how to
compress a block), the reader (how to decompress a block, bounded) and ``cnd image info`` (what the
options block says).  Adding a compressor is one class here and one line in ``REGISTRY``.

Rules the readers enforce:
- "gzip" is a zlib stream (no gzip header);
- zstd frames must record their content size (PySquashfsImage's decompressor needs it);
- xz streams use LZMA2 with a dictionary no larger than the block size and a CRC32 check (the
  kernel's xz_dec rejects anything else);
- the options block is written exactly when mksquashfs writes one (gzip level != 9, zstd level != 15,
  lz4 always, xz never for our settings), and it must be valid.

A :class:`Codec` is the chosen settings; ``compressor()`` builds one callable per compression thread.

Every compress function here must release the GIL while it compresses: the writer runs N of them
in threads at once (writer/pipeline.py), and one that kept the GIL would compress serially.
Measured with benchmarks/gil.py on CPython 3.11 (a call on a few MB in a second thread stops a
Python loop in the first for 0-5 % of the call, against 75-88 % for ``bytes.upper``, which keeps the
GIL): zlib (gzip 1 and 9), python-zstandard 0.25 (zstd 6 and 19), lzma (xz), lz4.block 4.4 (fast
and high compression) all release it.  So does python-lzo 1.15 (levels 1 and 9), should lzo ever
become writable.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from condainer.errors import ImageError
from condainer.fs import format as fmt

if TYPE_CHECKING:  # config.py imports this module on every cnd start: keep it cheap
    from collections.abc import Callable

    Compress = Callable[[bytes], bytes]
    Decompress = Callable[[bytes, int], bytes]  # (data, limit): limit bounds the output


class CodecUnavailable(ImageError):
    """The Python module a compressor needs is not installed."""


class Compression:
    """One squashfs compressor.  Subclasses fill in the class attributes and the methods they have."""

    name: str
    id: int  # the superblock's compression id this entry reads
    levels: tuple[int, int] | None = None  # levels the Python writer takes
    # Whether a user may choose a level (--level, compression_level): only where mksquashfs has
    # -Xcompression-level too, so that both pack backends honour it.
    user_levels: bool = False
    default_level: int | None = None  # what condainer packs with when no level is given
    implied_level: int | None = None  # what an image without an options block means (mksquashfs's default)
    writable: bool = True  # the Python writer can produce it

    @property
    def superblock_id(self) -> int:
        """The id the writer stores in the superblock."""
        return self.id

    @property
    def uncompressed_flags(self) -> int:
        """Superblock flags the writer sets for this compressor."""
        return 0

    def compressor(self, level: int | None, block_size: int) -> Compress:
        """A function bytes -> compressed bytes (the caller decides whether to keep the result),
        for one thread at a time, that releases the GIL while it compresses (module docstring)."""
        raise NotImplementedError(self.name)

    def decompressor(self) -> Decompress:
        """A fresh decompressor for one thread at a time (python-zstandard objects are not thread-safe)."""
        raise NotImplementedError(self.name)

    def options_block(self, level: int | None) -> bytes:
        """The compressor options payload the writer stores, or b"" where mksquashfs writes none."""
        return b""

    def describe_options(self, block: bytes) -> dict:
        """What a stored options block says (``cnd image info``); struct.error if it is too short."""
        return {}

    def check_writable(self) -> None:
        """Raise ImageError (one line) if this machine cannot write with it."""


class Gzip(Compression):
    name, id = "gzip", fmt.COMP_GZIP
    levels, user_levels, default_level, implied_level = (1, 9), True, 9, 9

    def compressor(self, level: int | None, block_size: int) -> Compress:
        import zlib

        return lambda data: zlib.compress(data, level)

    def decompressor(self) -> Decompress:
        import zlib

        def decompress(data: bytes, limit: int) -> bytes:
            d = zlib.decompressobj()
            out = d.decompress(data, limit)
            if d.unconsumed_tail:
                raise ValueError("block inflates beyond its size limit")
            return out

        return decompress

    def options_block(self, level: int | None) -> bytes:
        return struct.pack("<IHH", level, 15, 0) if level != self.implied_level else b""

    def describe_options(self, block: bytes) -> dict:
        level, window, strategies = struct.unpack_from("<IHH", block)
        return {"level": level, "window_size": window, "strategies": strategies}


class Zstd(Compression):
    name, id = "zstd", fmt.COMP_ZSTD
    # zstd 6: see README "Choosing the default compression level" for the measured size/time table.
    levels, user_levels, default_level, implied_level = (1, 22), True, 6, 15

    def compressor(self, level: int | None, block_size: int) -> Compress:
        import zstandard

        cctx = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False)
        return cctx.compress

    def decompressor(self) -> Decompress:
        import zstandard

        dctx = zstandard.ZstdDecompressor()
        frame_content_size = zstandard.frame_content_size

        def decompress(data: bytes, limit: int) -> bytes:
            # A damaged frame header can claim any content size; refuse before allocating it.
            declared = frame_content_size(data)
            if declared > limit:
                raise ValueError(f"block claims {declared} bytes, limit {limit}")
            return dctx.decompress(data, max_output_size=limit)

        return decompress

    def options_block(self, level: int | None) -> bytes:
        return struct.pack("<I", level) if level != self.implied_level else b""

    def describe_options(self, block: bytes) -> dict:
        (level,) = struct.unpack_from("<I", block)
        return {"level": level}


class _Lzma(Compression):
    """xz and the older lzma: the same decoder, different stream formats."""

    def decompressor(self) -> Decompress:
        import lzma

        form = lzma.FORMAT_XZ if self.name == "xz" else lzma.FORMAT_ALONE

        def decompress(data: bytes, limit: int) -> bytes:
            d = lzma.LZMADecompressor(format=form)
            out = d.decompress(data, max_length=limit)
            if not d.eof and d.needs_input is False:
                raise ValueError("block inflates beyond its size limit")
            return out

        return decompress


class Xz(_Lzma):
    name, id = "xz", fmt.COMP_XZ
    levels = (0, 9)

    def compressor(self, level: int | None, block_size: int) -> Compress:
        import lzma

        filters = [{"id": lzma.FILTER_LZMA2, "preset": 6 if level is None else level, "dict_size": block_size}]
        return lambda data: lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=filters)

    def describe_options(self, block: bytes) -> dict:
        dict_size, filters = struct.unpack_from("<II", block)
        return {"dictionary_size": dict_size, "filters": filters}


class Lzma(_Lzma):
    name, id, writable = "lzma", fmt.COMP_LZMA, False


class Lz4(Compression):
    name, id = "lz4", fmt.COMP_LZ4
    levels = (1, 12)

    def compressor(self, level: int | None, block_size: int) -> Compress:
        import lz4.block

        if level is None:
            return lambda data: lz4.block.compress(data, store_size=False)
        return lambda data: lz4.block.compress(data, mode="high_compression", compression=level, store_size=False)

    def decompressor(self) -> Decompress:
        try:
            import lz4.block
        except ImportError:
            raise CodecUnavailable("image is lz4-compressed but the lz4 module is not installed") from None

        def decompress(data: bytes, limit: int) -> bytes:
            # squashfs stores raw LZ4 blocks (LZ4_decompress_safe), not lz4 frames.
            return lz4.block.decompress(data, uncompressed_size=limit)

        return decompress

    def options_block(self, level: int | None) -> bytes:
        return struct.pack("<II", 1, 1 if level is not None else 0)  # version 1; flag 1: high compression

    def describe_options(self, block: bytes) -> dict:
        version, flags = struct.unpack_from("<II", block)
        return {"version": version, "flags": flags}

    def check_writable(self) -> None:
        try:
            import lz4.block  # noqa: F401
        except ImportError as exc:
            raise ImageError("lz4 compression needs the lz4 package: pip install lz4") from exc


class Lzo(Compression):
    name, id, writable = "lzo", fmt.COMP_LZO, False

    def decompressor(self) -> Decompress:
        try:
            import lzo
        except ImportError:
            raise CodecUnavailable(
                "image is lzo-compressed; reading it needs the python-lzo module, which is not installed"
            ) from None
        return lambda data, limit: lzo.decompress(data, False, limit)

    def describe_options(self, block: bytes) -> dict:
        algorithm, level = struct.unpack_from("<II", block)
        return {"algorithm": algorithm, "level": level}


class NoCompression(Compression):
    # Written as mksquashfs -noI -noD -noF -noX writes it: gzip's id plus the "uncompressed" flags.
    # Id 0 is no compressor of the spec; the reader takes it as "stored raw".
    name, id = "none", 0

    @property
    def superblock_id(self) -> int:
        return fmt.COMP_GZIP

    @property
    def uncompressed_flags(self) -> int:
        return (
            fmt.FLAG_UNCOMPRESSED_INODES
            | fmt.FLAG_UNCOMPRESSED_DATA
            | fmt.FLAG_UNCOMPRESSED_FRAGMENTS
            | fmt.FLAG_UNCOMPRESSED_XATTRS
            | fmt.FLAG_UNCOMPRESSED_IDS
        )

    def compressor(self, level: int | None, block_size: int) -> Compress:
        return lambda data: data

    def decompressor(self) -> Decompress:
        return lambda data, limit: data


# Order matters: it is the order the CLI offers them in.
REGISTRY: dict[str, Compression] = {
    c.name: c for c in (Zstd(), Gzip(), Xz(), Lz4(), NoCompression(), Lzma(), Lzo())
}
BY_ID: dict[int, Compression] = {c.id: c for c in REGISTRY.values()}
WRITABLE: tuple[str, ...] = tuple(name for name, c in REGISTRY.items() if c.writable)


def level_range(name: str) -> tuple[int, int] | None:
    """The levels a user may choose for compressor NAME (CLI, condainer.yml), or None: it takes none."""
    codec = REGISTRY.get(name)
    return codec.levels if codec is not None and codec.user_levels else None


def level_problem(name: str, level: int, *, chosen_by_user: bool = True) -> str | None:
    """Why LEVEL cannot be used with compressor NAME, or None: the one rule (and wording) for the
    command line, condainer.yml and the writer. CHOSEN_BY_USER: only the levels a user may choose
    count (the writer itself also applies the fixed level of a compressor that offers none)."""
    codec = REGISTRY.get(name)
    levels = level_range(name) if chosen_by_user else (codec.levels if codec is not None else None)
    if levels is None:
        return f"{name} takes no level"
    lo, hi = levels
    return None if lo <= level <= hi else f"{name} level must be {lo}..{hi}, not {level}"


def block_size_problem(size: int) -> str | None:
    """Why SIZE cannot be a squashfs data block size, or None (the one rule, as level_problem)."""
    if fmt.MIN_BLOCK_SIZE <= size <= fmt.MAX_BLOCK_SIZE and not size & (size - 1):
        return None
    return f"{size} is not a power of two from 4096 (4K) to 1048576 (1M)"


def default_level(name: str) -> int | None:
    """The level condainer packs NAME with when none is given."""
    return REGISTRY[name].default_level


class Codec:
    """One compressor with its settings; compresses whole blocks, never streams across blocks.

    A plain class (not a dataclass: config.py imports this module on every cnd start)."""

    __slots__ = ("name", "level", "block_size")

    def __init__(self, name: str, level: int | None, block_size: int) -> None:
        self.name = name  # a WRITABLE name
        self.level = level
        self.block_size = block_size

    def __repr__(self) -> str:
        return f"Codec({self.name!r}, {self.level!r}, {self.block_size!r})"

    @property
    def squashfs_id(self) -> int:
        return REGISTRY[self.name].superblock_id

    @property
    def uncompressed_flags(self) -> int:
        return REGISTRY[self.name].uncompressed_flags

    @property
    def raw(self) -> bool:
        """Everything is stored uncompressed (no compressor runs at all)."""
        return self.name == "none"

    def options_block(self) -> bytes:
        """The compressor options payload, or b"" where mksquashfs writes none."""
        return REGISTRY[self.name].options_block(self.level)

    def compressor(self) -> Compress:
        """A function bytes -> compressed bytes (the caller decides whether to keep it); one per thread."""
        return REGISTRY[self.name].compressor(self.level, self.block_size)


def make_codec(name: str, level: int | None, block_size: int) -> Codec:
    """Validate the settings (one-line ImageError) and return the codec; level None: the default."""
    spec = REGISTRY.get(name)
    if spec is None or not spec.writable:
        raise ImageError(f"unknown compression {name!r}: choose {', '.join(WRITABLE[:-1])} or {WRITABLE[-1]}")
    problem = block_size_problem(block_size)
    if problem:
        raise ImageError(f"block size {problem}")
    if spec.levels is None:
        level = None
    elif level is None:
        level = spec.default_level
    problem = level_problem(name, level, chosen_by_user=False) if level is not None else None
    if problem:
        raise ImageError(problem)
    spec.check_writable()
    return Codec(name, level, block_size)
