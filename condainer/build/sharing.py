"""Whoever can read the project can use its image: the staged tree's modes and group, set before packing.

The staging directory is made 0700 (it sits in a shared /tmp while it is built), and a user with
umask 077 installs files that only they can read. Packed like that, the image's root would be
``drwx------`` of the builder: with ``default_permissions`` (a host mount) another member of the
project's group could mount it and then reach nothing inside. So before packing, every entry gets
the read (and, where its owner has it, search/execute) bits for the classes the project directory
itself lets in, and the group of a group-shared project directory (setgid 2770, say) when the
builder belongs to it.
"""

from __future__ import annotations

import os
import stat


def reader_bits(project_dir: os.PathLike | str) -> int:
    """The group and other bits (r-x of each) that the project directory grants."""
    mode = os.stat(project_dir).st_mode
    bits = 0
    if mode & 0o050 == 0o050:
        bits |= 0o050
    if mode & 0o005 == 0o005:
        bits |= 0o005
    return bits


def shared_group(project_dir: os.PathLike | str) -> int | None:
    """The project directory's group when it is not our own primary group but one we belong to."""
    gid = os.stat(project_dir).st_gid
    if gid == os.getegid() or gid not in os.getgroups():
        return None
    return gid


def open_to_project(tree: os.PathLike | str, project_dir: os.PathLike | str) -> int:
    """Give TREE's entries the access PROJECT_DIR grants its readers (never write access, never
    more than the owner has) and its shared group; returns how many entries changed."""
    bits = reader_bits(project_dir)
    group = shared_group(project_dir)
    changed = 0
    for top, dirs, files in os.walk(tree):
        for name in [None, *files, *dirs] if top == os.fspath(tree) else [*files, *dirs]:
            path = top if name is None else os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            if group is not None and st.st_gid != group:
                os.lchown(path, -1, group)
                changed += 1
            owner = (st.st_mode >> 6) & 0o5  # the owner's r and x, spread to the classes let in
            wanted = st.st_mode | (((owner << 3) | owner) & bits)
            if stat.S_IMODE(wanted) != stat.S_IMODE(st.st_mode):
                os.chmod(path, stat.S_IMODE(wanted))
                changed += 1
    return changed
