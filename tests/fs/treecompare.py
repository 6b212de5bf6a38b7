"""Snapshot a tree (a directory, a mount or an image) into a comparable dict, and diff two snapshots.

Reusable by any test that checks what a reader shows against the source it was packed from:
``snapshot(path)`` walks a mounted or extracted tree, ``snapshot_image(image)`` reads an image
through PySquashfsImage; both give ``{relative path (bytes): {field: value}}`` with the same fields,
so ``assert_same(snapshot(src), snapshot(mnt))`` is the whole check. ``ignore`` drops fields a
reader cannot show (e.g. ``{"xattrs"}`` for squashfuse 0.1.105, ``{"mtime:symlink"}``).

Fields: type, mode (permission bits incl. setuid/setgid/sticky), uid, gid, mtime (seconds), size and
sha256 (files), target (symlinks), rdev (major, minor for devices), xattrs (dict, user/trusted/security
only: what squashfs can store), links (the sorted paths of a hard-link group inside the tree).
"""

from __future__ import annotations

import hashlib
import os
import stat

TYPES = {
    stat.S_IFDIR: "dir",
    stat.S_IFREG: "file",
    stat.S_IFLNK: "symlink",
    stat.S_IFBLK: "blockdev",
    stat.S_IFCHR: "chardev",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}
XATTR_PREFIXES = (b"user.", b"trusted.", b"security.")


def _hash_file(path: bytes) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _xattrs(path: bytes) -> dict[bytes, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in names:
        raw = os.fsencode(name)
        if raw.startswith(XATTR_PREFIXES):
            out[raw] = os.getxattr(path, name, follow_symlinks=False)
    return out


def snapshot(root: os.PathLike | str | bytes, *, xattrs: bool = True, skip: set[bytes] = frozenset()) -> dict:
    """Walk ``root`` (never following symlinks) into {relative path: fields}; root is b".".

    ``skip``: relative paths to leave out (e.g. the image itself when it was written inside root).
    """
    root_b = os.fsencode(root)
    result: dict[bytes, dict] = {}
    inodes: dict[tuple[int, int], list[bytes]] = {}
    stack = [b"."]
    while stack:
        rel = stack.pop()
        path = root_b if rel == b"." else os.path.join(root_b, rel)
        st = os.lstat(path)
        kind = TYPES[stat.S_IFMT(st.st_mode)]
        rec = {
            "type": kind,
            "mode": stat.S_IMODE(st.st_mode),
            "uid": st.st_uid,
            "gid": st.st_gid,
            "mtime": st.st_mtime_ns // 1_000_000_000,
        }
        if kind == "file":
            rec["size"] = st.st_size
            rec["sha256"] = _hash_file(path)
        elif kind == "symlink":
            rec["target"] = os.readlink(path)
        elif kind in ("blockdev", "chardev"):
            rec["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
        if xattrs:
            rec["xattrs"] = _xattrs(path)
        if kind != "dir":
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        result[rel] = rec
        if kind == "dir":
            for name in sorted(os.listdir(path)):
                child = name if rel == b"." else os.path.join(rel, name)
                if child not in skip:
                    stack.append(child)
    _add_links(result, inodes.values())
    return result


def _add_links(result: dict, groups) -> None:
    for group in groups:
        if len(group) > 1:
            members = tuple(sorted(group))
            for rel in group:
                result[rel]["links"] = members


def snapshot_image(image: os.PathLike | str) -> dict:
    """The same snapshot read through PySquashfsImage (no xattrs: it only applies them on extract).

    PySquashfsImage 0.9.0 decodes names as UTF-8, so images holding other names cannot be read.
    """
    from PySquashfsImage import SquashFsImage

    result: dict[bytes, dict] = {}
    inodes: dict[int, list[bytes]] = {}
    with SquashFsImage.from_file(os.fspath(image)) as img:
        stack = [(b".", img.root)]
        while stack:
            rel, f = stack.pop()
            kind = TYPES[stat.S_IFMT(f.mode)]
            rec = {"type": kind, "mode": stat.S_IMODE(f.mode), "uid": f.uid, "gid": f.gid, "mtime": f.time}
            if kind == "file":
                data = f.read_bytes()
                rec["size"] = len(data)
                rec["sha256"] = hashlib.sha256(data).hexdigest()
                if f.size != len(data):
                    rec["size"] = ("mismatch", f.size, len(data))
            elif kind == "symlink":
                # readlink() decodes as UTF-8; the inode keeps the raw bytes (private in 0.9.0).
                rec["target"] = bytes(f.inode._symlink)
            elif kind in ("blockdev", "chardev"):
                rec["rdev"] = (f.major, f.minor)
            if kind != "dir":
                inodes.setdefault(f.inode.inode_number, []).append(rel)
            result[rel] = rec
            if kind == "dir":
                for child in f.iterdir():
                    name = child._name
                    stack.append((name if rel == b"." else rel + b"/" + name, child))
    _add_links(result, inodes.values())
    return result


def diff(expected: dict, actual: dict, ignore: set[str] = frozenset()) -> list[str]:
    """Human-readable differences; ``ignore`` holds field names, or "field:type" for one type only."""
    problems = []
    for rel in sorted(set(expected) | set(actual)):
        if rel not in actual:
            problems.append(f"{rel!r}: missing")
            continue
        if rel not in expected:
            problems.append(f"{rel!r}: unexpected")
            continue
        e, a = expected[rel], actual[rel]
        for field in sorted(set(e) | set(a)):
            if field in ignore or f"{field}:{e['type']}" in ignore:
                continue
            if e.get(field) != a.get(field):
                problems.append(f"{rel!r}: {field} {_short(e.get(field))} != {_short(a.get(field))}")
    return problems


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def assert_same(expected: dict, actual: dict, ignore: set[str] = frozenset()) -> None:
    problems = diff(expected, actual, ignore)
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:50])
