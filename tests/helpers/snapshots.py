"""Snapshot a tree (a directory, a mount or an image) into a comparable dict, and diff two snapshots.

Two depths: ``snapshot`` / ``snapshot_image`` record what a source tree and an image must agree on
(portable fields: no inode numbers or block counts), for source-vs-reader checks; ``stat_snapshot``
records everything stat, listxattr/getxattr and read say about a mount, inode numbers and st_blocks
included, for mount-vs-mount checks (our FUSE daemon against the kernel).

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

import errno
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


# -- mount against mount ------------------------------------------------------------------------------


ABSENT_XATTR = "user.condainer-test-absent"


def stat_snapshot(root: str, *, content: bool = True) -> dict:
    """Everything stat, readlink, listxattr/getxattr and read say about a tree, keyed by path.

    Errors of listxattr and of getxattr for a name no entry has are recorded, not raised: what
    they are is part of what a mount shows.

    Hard links show as equal st_ino values; the root's own entry is compared too."""
    root_b = os.fsencode(root)
    out: dict[bytes, tuple] = {}
    stack = [b""]
    while stack:
        rel = stack.pop()
        path = root_b + rel
        st = os.lstat(path)
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError as e:  # the kernel's squashfs: EOPNOTSUPP on some inodes of an image without xattrs
            xattrs = ("listxattr failed", errno.errorcode.get(e.errno, e.errno))
        else:
            xattrs = tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))
        try:
            os.getxattr(path, ABSENT_XATTR, follow_symlinks=False)
            probe = "present"
        except OSError as e:  # ENODATA, or EOPNOTSUPP on an image without xattrs
            probe = errno.errorcode.get(e.errno, e.errno)
        extra = None
        if stat.S_ISREG(st.st_mode) and content:
            with open(path, "rb") as f:
                extra = hashlib.sha256(f.read()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            extra = os.readlink(path)
        out[rel or b"/"] = (
            stat.S_IFMT(st.st_mode),
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            st.st_mtime_ns,
            st.st_size,
            st.st_nlink,
            st.st_rdev,
            st.st_ino,
            st.st_blocks,
            xattrs,
            probe,
            extra,
        )
        if stat.S_ISDIR(st.st_mode):
            names = sorted(os.listdir(path))
            stack.extend(rel + b"/" + n for n in reversed(names))
    return out


STAT_FIELDS = (
    "type",
    "mode",
    "uid",
    "gid",
    "mtime_ns",
    "size",
    "nlink",
    "rdev",
    "ino",
    "blocks",
    "xattrs",
    "absent_xattr",
    "content",
)


def diff_stat_snapshots(a: dict, b: dict, limit: int = 20) -> list[str]:
    """Differences of two stat_snapshots, field by field (at most about LIMIT)."""
    problems = []
    for path in sorted(set(a) | set(b)):
        if path not in a or path not in b:
            problems.append(f"{path!r}: only in {'first' if path in a else 'second'}")
            continue
        for name, x, y in zip(STAT_FIELDS, a[path], b[path], strict=True):
            if x != y:
                problems.append(f"{path!r}: {name} {x!r} != {y!r}")
        if len(problems) >= limit:
            break
    return problems
