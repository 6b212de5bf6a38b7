"""Which backend `auto` picks for packing and mounting, and why (reported by `cnd prereq`)."""

from __future__ import annotations

import dataclasses
import os
import shutil

from condainer.errors import ToolMissing


@dataclasses.dataclass(frozen=True)
class Choice:
    backend: str  # "native" or "python"
    tool: str  # what will run: a path, or the Python module
    reason: str


def native_packer() -> str | None:
    return shutil.which("mksquashfs")


def native_mounter() -> str | None:
    """squashfuse_ll (the fast low-level daemon) when present, else squashfuse."""
    return shutil.which("squashfuse_ll") or shutil.which("squashfuse")


def fusermount() -> str | None:
    return shutil.which("fusermount3") or shutil.which("fusermount")


def fuse_problem() -> str | None:
    """Why FUSE cannot work here, or None when it can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist (FUSE kernel module not loaded or not available in this container)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable for this user"
    if os.geteuid() != 0 and fusermount() is None:
        return "fusermount3/fusermount not found (install fuse3)"
    return None


def choose_packer(requested: str = "auto") -> Choice:
    tool = native_packer()
    if requested == "python":
        return Choice("python", "condainer.fs.writer", "asked for with --backend python")
    if requested == "native":
        if tool is None:
            raise ToolMissing("--backend native needs mksquashfs, which is not on PATH (install squashfs-tools)")
        return Choice("native", tool, "asked for with --backend native")
    if tool:
        return Choice("native", tool, "mksquashfs found on PATH")
    return Choice("python", "condainer.fs.writer", "mksquashfs not on PATH: using the Python writer")


def choose_mounter(requested: str = "auto") -> Choice:
    tool = native_mounter()
    if requested == "python":
        return Choice("python", "condainer.fs.fuse", "asked for with --backend python")
    if requested == "native":
        if tool is None:
            raise ToolMissing(
                "--backend native needs squashfuse_ll or squashfuse, neither is on PATH (install squashfuse)"
            )
        return Choice("native", tool, "asked for with --backend native")
    if tool:
        return Choice("native", tool, f"{os.path.basename(tool)} found on PATH")
    return Choice("python", "condainer.fs.fuse", "squashfuse not on PATH: using the Python FUSE reader")
