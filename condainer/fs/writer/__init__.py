"""The squashfs 4.0 writer: a directory tree -> an image, with no native tools.

pack.py (checks, temporary file, atomic rename) -> image.py (the write order), which has scan.py
list the tree directory by directory as it writes the data -> data.py (data blocks, tails packed
by fragments.py, parallel compression in pipeline.py; files opened by source.py, duplicates found by
twins.py; an old image's blocks copied where they hold the same data, reuse.py),
inodes.py, directory.py, tables.py, all through metablock.py (the 8 KiB metadata stream); layouts
from ..format, codecs from ..compression.
"""

from condainer.fs.writer.pack import PackStats, check_target, interrupted, pack_tree

__all__ = ["PackStats", "check_target", "interrupted", "pack_tree"]
