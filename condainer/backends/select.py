"""Which backend `auto` picks for packing and mounting, and why (reported by `cnd prereq`)."""

from __future__ import annotations

import dataclasses
import os
import shutil

from condainer import mounts
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
    return mounts.system_tool("fusermount3") or mounts.system_tool("fusermount")


def fuse_problem() -> str | None:
    """Why FUSE cannot work here, or None when it can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist (FUSE kernel module not loaded or not available in this container)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable for this user"
    if os.geteuid() != 0 and fusermount() is None:
        return "fusermount3/fusermount not found (install fuse3)"
    return None


def _choose(requested: str, tool: str | None, module: str, *, missing: str, found: str, fallback: str) -> Choice:
    """The one rule for both jobs: python if asked; native if asked (or refuse when the tool is
    missing); auto takes the native tool when it is on PATH, the Python module otherwise."""
    if requested == "python":
        return Choice("python", module, "asked for with --backend python")
    if requested == "native":
        if tool is None:
            raise ToolMissing(f"--backend native needs {missing}")
        return Choice("native", tool, "asked for with --backend native")
    if tool:
        return Choice("native", tool, found)
    return Choice("python", module, fallback)


def choose_packer(requested: str = "auto") -> Choice:
    return _choose(requested, native_packer(), "condainer.fs.writer",
                   missing="mksquashfs, which is not on PATH (install squashfs-tools)",
                   found="mksquashfs found on PATH",
                   fallback="mksquashfs not on PATH: using the Python writer")


def choose_mounter(requested: str = "auto") -> Choice:
    tool = native_mounter()
    return _choose(requested, tool, "condainer.fs.fuse",
                   missing="squashfuse_ll or squashfuse, neither is on PATH (install squashfuse)",
                   found=f"{os.path.basename(tool or '')} found on PATH",
                   fallback="squashfuse not on PATH: using the Python FUSE reader")
