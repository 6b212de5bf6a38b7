"""Images made with every mksquashfs option a user may have used (and by squashfs-tools-ng's
gensquashfs and tar2sqfs), read by our reader and FUSE mount.

For each image of the matrix:

- both FUSE layers show exactly what the kernel's own squashfs shows over a loop mount: metadata,
  content, xattrs, hard-link groups, statvfs;
- the reader returns the kernel's bytes for reads at any offset and length;
- ``cnd image check`` reads it without complaint and ``cnd image info --json`` names its compressor,
  block size and what the kernel sees in it.

One source tree (build_tree) serves most cases; the others need their own: a tree whose tables all
span several metadata blocks (directories of 256, 257 and 700 long names, thousands of uids/gids, 600
xattr ids, extended inodes of every type), an empty directory, a single file, images appended to.
A 6 GiB sparse file checks 64-bit sizes and offsets.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass, field

import pytest

from condainer.fs.format import NO_TABLE as INVALID_TABLE
from condainer.fs.reader import SquashfsReader
from tests.helpers import mounts
from tests.helpers.cnd import cnd
from tests.helpers.mounts import IS_ROOT, fuse_usable, have, python_mount, unmount
from tests.helpers.snapshots import STAT_FIELDS, diff_stat_snapshots, stat_snapshot
from tests.helpers.trees import build_tree

pytestmark = [
    pytest.mark.skipif(
        not (fuse_usable() and have("mksquashfs")), reason="needs /dev/fuse, fusermount3 and mksquashfs"
    ),
    pytest.mark.skipif(not IS_ROOT, reason="the kernel loop mount (the reference) needs root"),
]

try:
    import lzo  # noqa: F401

    HAVE_LZO = True
except ImportError:
    HAVE_LZO = False

BS = 128 * 1024  # mksquashfs's default block size


@dataclass(frozen=True)
class Case:
    source: str  # "tree", "tables", "empty", "file" (one file of tree as the whole source)
    options: tuple[str, ...] = ()
    compression: str = "gzip"  # mksquashfs's default
    block_size: int = BS
    info: dict = field(default_factory=dict)  # more fields `cnd image info --json` must report
    append: tuple[str, ...] | None = None  # options of a second mksquashfs run adding "appendix"
    # mksquashfs, or a tar of the source into `mksquashfs - IMG -tar`, or squashfs-tools-ng's
    # gensquashfs / tar2sqfs (another writer, another layout; options are then theirs)
    tool: str = "mksquashfs"
    reference: str | None = None  # the case whose kernel mount is the reference (if not this one)


CASES: dict[str, Case] = {
    "default": Case("tree", info={"exportable": True, "xattrs": True, "compression_options": {}}),
    "b4096": Case("tree", ("-b", "4096"), block_size=4096),
    "b65536": Case("tree", ("-b", "65536"), block_size=65536),
    "b1m": Case("tree", ("-b", "1048576"), block_size=1 << 20),
    "no-fragments": Case("tree", ("-no-fragments",), info={"fragments": 0}),
    "always-use-fragments": Case("tree", ("-always-use-fragments",)),
    "uncompressed": Case(
        "tree",
        ("-noI", "-noD", "-noF", "-noX"),
        info={
            "flags": [
                "uncompressed inodes",
                "uncompressed data",
                "uncompressed fragments",
                "deduplicated",
                "exportable",
                "uncompressed xattrs",
            ]
        },
    ),
    "noI": Case("tree", ("-noI",)),
    "no-xattrs": Case("tree", ("-no-xattrs",), info={"xattrs": False}),
    "exports": Case("tree", ("-exports",), info={"exportable": True}),
    "no-exports": Case("tree", ("-no-exports",), info={"exportable": False}),
    "no-duplicates": Case("tree", ("-no-duplicates",)),
    "no-sparse": Case("tree", ("-no-sparse",)),
    "no-hardlinks": Case("tree", ("-no-hardlinks",), info={"hard_links": 0}),
    "all-root": Case("tree", ("-all-root",), info={"ids": 1}),
    "force-ids": Case("tree", ("-force-uid", "12345", "-force-gid", "54321"), info={"ids": 2}),
    "nopad": Case("tree", ("-nopad",)),
    "keep-as-directory": Case("tree", ("-keep-as-directory",)),
    "lz4": Case("tree", ("-comp", "lz4"), "lz4", info={"compression_options": {"version": 1, "flags": 0}}),
    "lz4-hc": Case(
        "tree", ("-comp", "lz4", "-Xhc"), "lz4", info={"compression_options": {"version": 1, "flags": 1}}
    ),
    "lzo": Case("tree", ("-comp", "lzo"), "lzo"),
    # The kernel has no lzma (squashfs compressor 2); the same tree packed with gzip is the reference.
    "lzma": Case("tree", ("-comp", "lzma"), "lzma", reference="default"),
    "xz-bcj-x86": Case(
        "tree",
        ("-comp", "xz", "-Xbcj", "x86"),
        "xz",
        info={"compression_options": {"dictionary_size": BS, "filters": 1}},
    ),
    "gzip-1-window8": Case(
        "tree",
        ("-comp", "gzip", "-Xcompression-level", "1", "-Xwindow-size", "8"),
        info={"compression_options": {"level": 1, "window_size": 8, "strategies": 0}},
    ),
    "zstd-22": Case(
        "tree",
        ("-comp", "zstd", "-Xcompression-level", "22"),
        "zstd",
        info={"compression_options": {"level": 22}},
    ),
    "tables": Case("tables"),
    "tables-4k-noI": Case("tables", ("-b", "4096", "-noI"), block_size=4096),
    "tables-zstd-no-xattrs": Case("tables", ("-comp", "zstd", "-no-xattrs"), "zstd", info={"xattrs": False}),
    "empty": Case("empty", info={"inodes": 1, "files": 0, "directories": 1, "fragments": 0}),
    "single-file": Case("file", ("-comp", "zstd"), "zstd", info={"files": 1, "directories": 1}),
    "appended": Case("tree", ("-comp", "xz"), "xz", append=()),
    "mksquashfs-tar": Case(
        "tree", ("-comp", "zstd"), "zstd", info={"exportable": False}, tool="mksquashfs-tar"
    ),
    "gensquashfs": Case("tree", ("-c", "zstd", "-e"), "zstd", info={"exportable": True}, tool="gensquashfs"),
    "gensquashfs-4k-lz4": Case("tree", ("-c", "lz4", "-b", "4096", "-T"), "lz4", 4096, tool="gensquashfs"),
    "tar2sqfs": Case("tree", ("-c", "xz"), "xz", tool="tar2sqfs"),
    "appended-root-becomes": Case("tree", ("-b", "65536"), block_size=65536, append=("-root-becomes", "old")),
}
UNSUPPORTED = set() if HAVE_LZO else {"lzo"}


def _params(names) -> list:
    """Case ids as pytest params, skipped where squashfs-tools-ng is not installed."""
    out = []
    for name in names:
        tool = CASES[name].tool.split("-")[0]  # mksquashfs-tar runs mksquashfs
        out.append(pytest.param(name, marks=pytest.mark.skipif(not have(tool), reason=f"needs {tool}")))
    return out


READABLE = _params(c for c in CASES if c not in UNSUPPORTED)


# -- sources -----------------------------------------------------------------------------------------


def _tables_tree(root: str) -> None:
    """Every table of the image spans several metadata blocks, and every extended inode type occurs.

    Directories of exactly 256 and 257 entries (one directory header holds at most 256), and one of
    700 names of 255 bytes sharing long prefixes: its listing spans many metadata blocks, so its
    inode is an extended directory with a directory index.  Distinct uids and gids (more than the
    2048 ids a metadata block holds), 600 distinct xattr values (more than the 512 xattr ids a block
    holds), some 1800 inodes (an export table of two blocks), files of 3000 bytes (over 512
    fragments with -b 4096).
    Symlinks, fifos, sockets and devices with (trusted.) xattrs have extended inodes."""
    rng = random.Random(3)
    uid = iter(range(10_000, 20_000))
    for count in (256, 257):
        d = os.path.join(root, f"entries_{count}")
        os.makedirs(d)
        for i in range(count):
            p = os.path.join(d, f"e{i:04d}")
            with open(p, "wb") as f:
                f.write(b"%d" % i)
            os.chown(p, next(uid), next(uid))
    d = os.path.join(root, "long_names")
    os.makedirs(d)
    for i in range(700):
        name = f"{i:04d}".rjust(255, "L") if i % 3 else f"{i:04d}".ljust(255, "r")
        p = os.path.join(d, name)
        if i % 50 == 0:
            os.makedirs(p)
        elif i % 7 == 0:
            os.symlink(name[:100], p)
        else:
            with open(p, "wb") as f:
                f.write(rng.randbytes(i * 37 % 3000))
        os.chown(p, next(uid), next(uid), follow_symlinks=False)
    os.link(os.path.join(d, f"{1:04d}".rjust(255, "L")), os.path.join(root, "entries_256", "zz_link"))
    d = os.path.join(root, "xattr_ids")
    os.makedirs(d)
    for i in range(600):
        p = os.path.join(d, f"x{i:03d}")
        with open(p, "wb") as f:
            f.write(rng.randbytes(3000))
        os.setxattr(p, "user.n", b"value %d" % i)
        if i % 100 == 0:
            os.setxattr(p, "user.big", rng.randbytes(3000))
    d = os.path.join(root, "extended")
    os.makedirs(d)
    os.symlink("target", os.path.join(d, "symlink"))
    os.mkfifo(os.path.join(d, "fifo"))
    os.mknod(os.path.join(d, "chardev"), 0o600 | stat.S_IFCHR, os.makedev(4095, 1048575))
    os.mknod(os.path.join(d, "blockdev"), 0o600 | stat.S_IFBLK, os.makedev(8, 1))
    s = socket.socket(socket.AF_UNIX)
    s.bind(os.path.join(d, "socket"))
    s.close()
    for name in ("symlink", "fifo", "chardev", "blockdev", "socket"):
        os.setxattr(os.path.join(d, name), "trusted.t", name.encode(), follow_symlinks=False)
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        os.utime(dirpath, (1_500_000_000, 1_500_000_000))


def _appendix(root: str, tree: str) -> None:
    """The second source of the appended images: new names, a file equal to one of the first image
    (deduplicated against it), a hard link, a symlink, a file of several blocks plus a tail."""
    os.makedirs(os.path.join(root, "added", "sub"))
    with open(os.path.join(root, "added", "new_file"), "wb") as f:
        f.write(b"appended later\n" * 20000)
    os.link(os.path.join(root, "added", "new_file"), os.path.join(root, "added", "sub", "link"))
    shutil.copyfile(os.path.join(tree, "size_131073"), os.path.join(root, "added", "same_as_size_131073"))
    os.symlink("../size_1", os.path.join(root, "added", "up"))
    os.utime(os.path.join(root, "added"), (1_500_000_000, 1_500_000_000))


def _mksquashfs(sources: list[str], image: str, options: tuple[str, ...], *, noappend: bool = True) -> None:
    cmd = ["mksquashfs", *sources, image, "-no-progress", "-quiet", *options]
    if noappend:
        cmd.append("-noappend")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def _from_tar(source: str, cmd: list[str]) -> None:
    """Run CMD on a tar of SOURCE (xattrs of every namespace, holes kept; sockets are left out).

    The top-level names are archived, not ".": mksquashfs -tar refuses "./" paths."""
    names = sorted(os.listdir(source))
    tar_cmd = ["tar", "--xattrs", "--xattrs-include=*", "--sparse", "-C", source, "-cf", "-", "--", *names]
    tar = subprocess.Popen(tar_cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        subprocess.run(cmd, stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
    finally:
        tar.stdout.close()
        tar.wait()


def _build(case: Case, source: str, image: str) -> None:
    if case.tool == "mksquashfs":
        _mksquashfs([source], image, case.options)
    elif case.tool == "mksquashfs-tar":
        _from_tar(
            source, ["mksquashfs", "-", image, "-tar", "-noappend", "-quiet", "-no-progress", *case.options]
        )
    elif case.tool == "gensquashfs":
        subprocess.run(
            ["gensquashfs", "-D", source, "-k", "-x", "-q", "-f", *case.options, image], check=True
        )
    elif case.tool == "tar2sqfs":
        _from_tar(source, ["tar2sqfs", "-q", "-f", *case.options, image])
    else:
        raise ValueError(case.tool)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("matrix-src")
    paths = {name: str(base / name) for name in ("tree", "tables", "empty", "appendix")}
    build_tree(paths["tree"], big_dir=300)
    for name in ("tables", "empty", "appendix"):
        os.makedirs(paths[name])
    _tables_tree(paths["tables"])
    _appendix(paths["appendix"], paths["tree"])
    os.utime(paths["empty"], (1_500_000_000, 1_500_000_000))
    paths["file"] = os.path.join(paths["tree"], "size_393233")
    return paths


@pytest.fixture(scope="module")
def image_of(sources, tmp_path_factory):
    """case id -> its image, built on first use and shared by the tests of the module."""
    out = tmp_path_factory.mktemp("matrix-img")
    built: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in built:
            case = CASES[name]
            image = str(out / f"{name}.sqfs")
            _build(case, sources[case.source], image)
            if case.append is not None:
                comp = case.options[: case.options.index("-comp") + 2] if "-comp" in case.options else ()
                _mksquashfs([sources["appendix"]], image, (*comp, *case.append), noappend=False)
            built[name] = image
        return built[name]

    return get


def _loop_mountable(image: str, tmp_dir) -> str:
    """IMAGE, or a copy padded to 4 KiB: a loop device ends at a 512-byte boundary, so the kernel
    cannot mount a -nopad image whose last bytes lie past it.  Zeros after bytes_used are not
    part of the filesystem; our mount reads the unpadded original."""
    size = os.path.getsize(image)
    if size % 4096 == 0:
        return image
    padded = os.path.join(tmp_dir, "padded.sqfs")
    shutil.copyfile(image, padded)
    os.truncate(padded, -(-size // 4096) * 4096)
    return padded


STATVFS = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_namemax")


def _statvfs(mnt: str) -> dict[str, int]:
    sv = os.statvfs(mnt)
    return {k: getattr(sv, k) for k in STATVFS}


@pytest.fixture(scope="module")
def kernel_view(image_of, tmp_path_factory):
    """case id -> (snapshot, statvfs) of the kernel's loop mount of its reference image."""
    seen: dict[str, tuple[dict, dict]] = {}

    def get(name: str) -> tuple[dict, dict]:
        ref = CASES[name].reference or name
        if ref not in seen:
            tmp = tmp_path_factory.mktemp(f"kernel-{ref}")
            with mounts.kernel_mount(_loop_mountable(image_of(ref), tmp), str(tmp / "mnt")) as mnt:
                seen[ref] = (stat_snapshot(mnt), _statvfs(mnt))
        return seen[ref]

    return get


@pytest.fixture
def kernel_mount(image_of, tmp_path):
    """Mount a case's reference image with the kernel until the test ends (pass or fail)."""
    with contextlib.ExitStack() as stack:

        def mount(name: str) -> str:
            ref = CASES[name].reference or name
            image = _loop_mountable(image_of(ref), tmp_path)
            return stack.enter_context(mounts.kernel_mount(image, str(tmp_path / "kernel")))

        yield mount


def _has_xattr_table(image: str) -> bool:
    with SquashfsReader(image) as reader:
        return reader.sb.xattr_id_table_start != INVALID_TABLE


def _without_known_differences(snap: dict, api: str) -> dict:
    """The kernel's answers on an image without an xattr table, where ours deliberately differ.

    - listxattr: the kernel's squashfs says EOPNOTSUPP for the inodes whose operations include
      its listxattr (directories, symlinks, extended files such as hard-linked ones) and an empty
      list for the others (basic files, fifos); both our layers answer the empty list everywhere.
    - getxattr of a missing name on a file or directory (the VFS answers user.* on other types
      itself): the kernel says ENODATA; the low-level layer answers ENOSYS once, so the kernel
      answers EOPNOTSUPP by itself from then on (no round trip per exec for security.capability).
    """
    i_x, i_probe = STAT_FIELDS.index("xattrs"), STAT_FIELDS.index("absent_xattr")
    out = {}
    for path, fields in snap.items():
        fields = list(fields)
        if fields[i_x] == ("listxattr failed", "ENOTSUP"):
            fields[i_x] = ()
        assert fields[i_probe] == "ENODATA", (path, fields[i_probe])
        if api == "low" and fields[0] in (stat.S_IFREG, stat.S_IFDIR):
            fields[i_probe] = "ENOTSUP"
        out[path] = tuple(fields)
    return out


# -- tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["low", "high"])
@pytest.mark.parametrize("name", READABLE)
def test_fuse_mount_equals_kernel_mount(name, api, image_of, kernel_view, tmp_path, monkeypatch):
    """Both layers: libfuse3's low-level API (what every mount uses) and mfusepy's high-level
    fallback for libfuse2."""
    monkeypatch.setenv("CONDAINER_FUSE_API", api)
    image = image_of(name)
    reference, ref_statvfs = kernel_view(name)
    with python_mount(image, str(tmp_path / "fuse"), log_path=str(tmp_path / "fuse.log")) as mnt:
        ours = stat_snapshot(mnt)
        our_statvfs = _statvfs(mnt)
    if not _has_xattr_table(image):
        reference = _without_known_differences(reference, api)
    assert diff_stat_snapshots(reference, ours, limit=40) == []
    assert our_statvfs == ref_statvfs
    assert len(ours) >= (1 if CASES[name].source == "empty" else 2)


@pytest.mark.parametrize(
    "name", _params(c for c in CASES if c not in UNSUPPORTED and CASES[c].source != "empty")
)
def test_reads_at_any_offset_equal_kernel(name, image_of, kernel_mount):
    """The reader itself, at offsets and lengths the kernel's page cache never asks for: across
    block, fragment and sparse boundaries for every block size."""
    mnt = kernel_mount(name)
    rng = random.Random(name)
    with SquashfsReader(image_of(name)) as reader:
        files = 0
        for dirpath, _dirs, names in os.walk(mnt):
            for n in names:
                path = os.path.join(dirpath, n)
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                size = os.path.getsize(path)
                if size == 0 or (size < 4096 and rng.random() < 0.9):
                    continue
                files += 1
                node = reader.resolve("/" + os.path.relpath(path, mnt))
                bs = reader.sb.block_size
                with open(path, "rb") as f:
                    for _ in range(8):
                        off = rng.choice([rng.randrange(size + 1), (size // bs) * bs - 1, size - 1, bs - 1])
                        off = max(0, off)
                        n_bytes = rng.choice([1, 100, bs - 1, bs + 1, 3 * bs, size])
                        expected = os.pread(f.fileno(), n_bytes, off)
                        assert reader.read(node, off, n_bytes) == expected, (path, off, n_bytes)
        assert files >= (1 if CASES[name].source == "file" else 10)


@pytest.mark.parametrize("name", READABLE)
def test_check_and_info(name, image_of, kernel_view):
    image = image_of(name)
    case = CASES[name]
    checked = cnd("image", "check", image)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"{image}: OK")
    shown = cnd("image", "info", "--json", image)
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert (info["compression"], info["block_size"]) == (case.compression, case.block_size)
    assert {k: info[k] for k in case.info} == case.info
    # What the kernel shows: entries by type, inodes once, hard links as the extra names.
    reference, _ = kernel_view(name)
    kinds = {
        stat.S_IFREG: "files",
        stat.S_IFDIR: "directories",
        stat.S_IFLNK: "symlinks",
        stat.S_IFCHR: "devices",
        stat.S_IFBLK: "devices",
        stat.S_IFIFO: "fifos",
        stat.S_IFSOCK: "sockets",
    }
    counts = dict.fromkeys(set(kinds.values()), 0)
    inodes = {}
    for fields in reference.values():
        inodes[fields[STAT_FIELDS.index("ino")]] = fields
    for fields in inodes.values():
        counts[kinds[fields[0]]] += 1
    counts["hard_links"] = len(reference) - len(inodes)
    assert {k: info[k] for k in counts} == counts
    assert info["inodes"] >= len(inodes)


@pytest.mark.skipif(HAVE_LZO, reason="python-lzo is installed: lzo images are read like the others")
def test_lzo_is_a_clean_error(image_of, tmp_path):
    """lzo needs python-lzo, which condainer does not depend on: without it mount, check and info
    each refuse with one line naming the image and the reason, a non-zero exit and no traceback,
    and nothing gets mounted."""
    image = image_of("lzo")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        results = [
            cnd("image", "mount", image, str(mnt), "--backend", "python"),
            cnd("image", "check", image),
            cnd("image", "info", "--json", image),
        ]
        assert not os.path.ismount(mnt)
    finally:
        unmount(str(mnt))
    for r in results:
        assert r.returncode != 0
        assert r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith(f"cnd: error: {image}: ") and "lzo" in lines[0], lines[0]


@pytest.fixture(scope="module")
def huge_image(tmp_path_factory) -> str:
    """A 6 GiB sparse file (data at 5 GB and at the end) in an image of 100 KiB: tar2sqfs packs it
    from a sparse tar without reading the holes, which mksquashfs would."""
    if not have("tar2sqfs"):
        pytest.skip("needs tar2sqfs (squashfs-tools-ng)")
    base = tmp_path_factory.mktemp("huge")
    os.makedirs(base / "src")
    with open(base / "src" / "big", "wb") as f:
        f.truncate(HUGE)
        f.seek(5_000_000_000)
        f.write(random.Random(5).randbytes(300_000))
        f.seek(HUGE - 9)
        f.write(b"tail data")
    image = str(base / "huge.sqfs")
    _from_tar(str(base / "src"), ["tar2sqfs", "-q", "-f", "-c", "zstd", image])
    return image


HUGE = 6 << 30
HUGE_OFFSETS = (0, 4_999_990_000, 5_000_299_990, (1 << 32) - 7, (1 << 32) + 3 * BS - 1, HUGE - 20, HUGE - 1)


@pytest.mark.parametrize("api", ["low", "high"])
def test_file_beyond_4gib_equals_kernel(api, huge_image, tmp_path, monkeypatch):
    """64-bit file sizes and offsets (an extended file inode), through both layers and the reader;
    reads are probes, not whole-file hashes, to keep it fast."""
    monkeypatch.setenv("CONDAINER_FUSE_API", api)

    def probe(root: str) -> tuple:
        with open(os.path.join(root, "big"), "rb") as f:
            return tuple(os.pread(f.fileno(), 200_000, off) for off in HUGE_OFFSETS)

    with mounts.kernel_mount(huge_image, str(tmp_path / "kernel")) as mnt:
        reference, reference_reads = stat_snapshot(mnt, content=False), probe(mnt)
    with python_mount(huge_image, str(tmp_path / "fuse")) as mnt:
        ours, our_reads = stat_snapshot(mnt, content=False), probe(mnt)
    if not _has_xattr_table(huge_image):
        reference = _without_known_differences(reference, api)
    assert diff_stat_snapshots(reference, ours) == []
    assert reference[b"/big"][STAT_FIELDS.index("size")] == HUGE
    assert our_reads == reference_reads
    assert reference_reads[2][:10] != bytes(10) and reference_reads[-1] == b"a"
    with SquashfsReader(huge_image) as reader:
        node = reader.resolve("/big")
        assert tuple(reader.read(node, off, 200_000) for off in HUGE_OFFSETS) == reference_reads
    checked = cnd("image", "check", huge_image)
    assert checked.returncode == 0, checked.stderr


def test_kernel_cannot_mount_lzma(image_of):
    """Why the "lzma" case takes the gzip image of the same tree as its reference (mksquashfs lays
    out both alike; only block contents differ): the kernel has no lzma.  If this fails, it has
    learnt it, and the case can be its own reference."""
    with pytest.raises(subprocess.CalledProcessError):
        with mounts.kernel_mount(image_of("lzma"), os.path.join(os.path.dirname(image_of("lzma")), "lzma-mnt")):
            pass
