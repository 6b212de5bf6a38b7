"""Helpers shared by the writer (tests/write) and reader (tests/read) tests: source trees, making and
unpacking images, mounting with every reader, snapshots to compare, and running cnd; and by the
tests where two real users share a project (users.py), and of the package's import graph (imports.py)."""
