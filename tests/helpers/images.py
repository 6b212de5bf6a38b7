"""Making and unpacking images for the tests: our writer, mksquashfs, unsquashfs."""

from __future__ import annotations

import os
import subprocess

from condainer.fs.options import PackOptions
from condainer.fs.writer import pack_tree


def pack(src, image, **kw) -> None:
    """Pack with the Python writer in this process: one processor, no progress bar unless asked."""
    kw.setdefault("progress", False)
    kw.setdefault("processors", 1)
    pack_tree(src, image, PackOptions(**kw))


def mksquashfs(src: str, image: str, comp: str, *extra: str) -> str:
    subprocess.run(
        ["mksquashfs", src, image, "-comp", comp, "-noappend", "-no-progress", "-quiet", *extra],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return image


def unsquashfs(image, dest) -> str:
    """Extract with unsquashfs (xattrs included); returns the extracted root."""
    out = os.path.join(os.fspath(dest), "x")
    proc = subprocess.run(
        ["unsquashfs", "-no-progress", "-xattrs", "-d", out, os.fspath(image)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "failed" not in proc.stderr.lower(), proc.stderr
    return out
