"""Read a squashfs 4.0 image the way a mount needs it: lazily, by range, from many threads.

PySquashfsImage 0.9.0 builds the whole tree when it opens an image, reads file data only from block
0, and shares one file position and one decompressor between callers.  This package keeps its
superblock structure and does the rest itself, one module per section of the format:

- nothing is walked at open: a directory's listing is parsed when it is first looked up, an inode
  when its reference is first followed (directory.py, inodes.py);
- ``read(offset, size)`` decompresses only the data blocks it touches, found through a per-file
  block index (data.py);
- all I/O is ``os.pread`` on one descriptor, so threads share no file position; a decompressor is
  used by one thread at a time, taken from a pool (metadata.py);
- decompressed data and metadata blocks live in bounded, locked LRU caches (cache.py).

Every value read from the image is checked before it is used to seek, allocate or loop, so a damaged
image raises :class:`DamagedImage` naming what is wrong instead of crashing or hanging.
"""

from condainer.fs.reader.damaged import DamagedImage
from condainer.fs.reader.directory import DirEntry, walk
from condainer.fs.reader.image import SquashfsReader
from condainer.fs.reader.inodes import Inode
from condainer.fs.reader.superblock import SuperInfo

__all__ = ["DamagedImage", "DirEntry", "Inode", "SquashfsReader", "SuperInfo", "walk"]
