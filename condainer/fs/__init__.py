"""Pure-Python squashfs 4.0: writer/ packs a tree into an image, reader/ reads one lazily, fuse/
mounts it; format.py (layouts) and compression.py (the codec registry) are shared by all three."""
