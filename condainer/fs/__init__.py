"""Pure-Python squashfs 4.0: a writer (pack a tree into an image) and a reader for FUSE."""
