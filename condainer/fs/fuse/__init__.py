"""Mount a squashfs image read-only with a Python FUSE daemon over mfusepy and libfuse.

The FUSE layers only adapt :class:`condainer.fs.reader.SquashfsReader`:

- policy.py     what the kernel is told and how errors are answered (timeouts, capabilities, mount
                options, attributes, dot entries, permission rule, errno map, CONDAINER_FUSE_* once);
- lowlevel.py   libfuse3's inode-based API (the default), over libfuse3.py's ctypes bindings;
- highlevel.py  mfusepy's path-based API (libfuse2, or CONDAINER_FUSE_API=high);
- serve.py      one mount served in this process; __main__.py the daemon's command line;
- mount.py      ``mount_image``: checks, starts the daemon, waits until the mount serves.

Because the image never changes, both adapters ask the kernel to cache everything it can, so
repeated stats, reads, listings, symlinks and failed lookups never come back to Python.  Mounts show
in /proc/self/mountinfo with fstype ``fuse.condainer`` and the absolute image path as source.
"""

from condainer.fs.fuse.mount import check_mount_prerequisites, mount_image

__all__ = ["check_mount_prerequisites", "mount_image"]
