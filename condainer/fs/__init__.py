"""Pure-Python squashfs 4.0: writer/ packs a tree into an image, reader/ reads one lazily, fuse/
mounts it; format.py (layouts) and compression.py (the codec registry) are shared by all three.

The layer stands on its own: from the rest of condainer it imports only condainer.errors, and what
it needs of the machine (host.py, interrupts.py) or of a person's terminal (progress.py) it holds
itself, for condainer to use as well; the rest (where the FUSE daemon logs, -q) its callers pass in.
"""
