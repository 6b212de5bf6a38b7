"""`cnd status`, `cnd prereq` and `cnd cache`: what a project and this machine look like."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from condainer import console, mounts
from condainer.backends import select
from condainer.backends.mount import check_image_file
from condainer.build.environments import conda, virtual
from condainer.errors import CondainerError, ToolMissing
from condainer.node.sessions import NodeSessions
from condainer.project import config
from condainer.project.directory import Project
from condainer.project.virtual_packages import YML_KEY

BACKEND_BY_FSTYPE = {
    "fuse.squashfuse_ll": "native (squashfuse_ll)",
    "fuse.squashfuse": "native (squashfuse)",
    "squashfs": "kernel",
}


def status(directory: Path) -> dict[str, Any]:
    project = Project.load(directory)
    mp = project.mountpoint
    entry = mounts.find_mount(mp)
    state = mounts.state(mp) if entry else "unmounted"
    running: list[int] = []
    pinned = False
    if project.state_dir.is_dir():
        sessions = NodeSessions(project.state_dir)
        with sessions.locked():
            running = sessions.active()
            pinned = sessions.pinned
    from condainer.node import mount_mode, private_mount, records

    try:
        mode, why = mount_mode.choose_mode(None, project.layout.mount_mode)
    except CondainerError as exc:
        mode, why = "namespace", f"asked for, but NOT usable: {exc.message}"
    holder = private_mount.current(project.layout)
    backend = None
    if entry:
        backend = BACKEND_BY_FSTYPE.get(entry.fstype, "python" if "condainer" in entry.fstype + entry.source else entry.fstype)
    return {
        "project": str(project.directory),
        "uuid": project.uuid,
        "image": str(project.image),
        "image_exists": project.image.is_file(),
        "image_size": project.image.stat().st_size if project.image.is_file() else None,
        "mountpoint": str(mp),
        "state": state,
        "mounted": state == "mounted",
        "backend": backend,
        "mounted_by_other_uid": mounts.other_users_mount(mp),
        "pinned": pinned,
        "execs_running": len(running),
        "mount_mode": mode,
        "mount_mode_reason": why,
        "private_mount": None if holder is None else {"holder_pid": holder.pid, "record": records.registry_dir()},
        "environment": str(project.env_prefix),
        "lock": _lock_status(project),
    }


def _lock_status(project: Project) -> dict[str, Any]:
    """Whether the project has condainer.lock, whether it is stale (why), and whether the image
    holds the same one."""
    from condainer.build import locked as locking
    from condainer.build import lockfile

    path = project.directory / lockfile.LOCK_NAME
    state: dict[str, Any] = {"project_lock": str(path) if path.is_file() else None, "stale": None}
    if path.is_file():
        try:
            state["stale"] = locking.stale_reason(project, lockfile.load(path))
        except CondainerError as exc:
            state["stale"] = exc.message
    if project.image.is_file():
        state.update(lockfile.image_lock_state(project.image, path if path.is_file() else None))
    else:
        state.update({"lock": None, "matches_project": None, "summary": "no image"})
    return state


def lock_line(lock: dict[str, Any]) -> str:
    """The `lock` line of `cnd status`: where the lock is, whether image and project agree, and why
    condainer.lock is stale if it is."""
    line = _lock_place(lock)
    return line + (f"; condainer.lock is stale: {lock['stale']}" if lock.get("stale") else "")


def _lock_place(lock: dict[str, Any]) -> str:
    if lock["lock"] is None:
        return "no image" + ("; condainer.lock present" if lock["project_lock"] else "; no condainer.lock")
    if lock["lock"] != "present":
        return f"image has {'no lock' if lock['lock'] == 'none' else 'an unreadable lock'}" + (
            "" if lock["project_lock"] else "; no condainer.lock")
    if lock["project_lock"] is None:
        return f"image has one ({lock['summary']}); the project has no condainer.lock"
    agree = "matches condainer.lock" if lock["matches_project"] else "differs from condainer.lock"
    return f"image has one ({lock['summary']}), {agree}"


def format_status(data: dict[str, Any]) -> str:
    if data["image_size"] is not None:
        size = console.human_bytes(data["image_size"])
    else:
        size = "not a file" if os.path.lexists(data["image"]) else "missing"
    lines = [
        f"project      {data['project']}",
        f"image        {data['image']} ({size})",
        f"mount point  {data['mountpoint']}",
        f"state        {data['state']}" + (f" ({data['backend']} backend)" if data["backend"] else "")
        + (f", by another user (uid {data['mounted_by_other_uid']}): not usable by you"
           if data["mounted_by_other_uid"] is not None else ""),
        f"execs        {data['execs_running']} running" + (", pinned by `cnd mount`" if data["pinned"] else ""),
        f"mount mode   {data['mount_mode']} for exec and launchers: {data['mount_mode_reason']}",
        "private      " + ("none on this node for you" if data["private_mount"] is None else
                           f"mounted in the namespace of pid {data['private_mount']['holder_pid']} (join it: "
                           f"nsenter -U -m --preserve-credentials -t {data['private_mount']['holder_pid']})"),
        f"lock         {lock_line(data['lock'])}",
    ]
    return "\n".join(lines)


def prereq(directory: Path | None = None) -> tuple[list[str], bool]:
    """Lines describing what `auto` picks and why; the flag is False when images cannot be mounted."""
    detection = virtual.Detection()  # a child process: it runs while we look at the rest
    lines = []
    packer = select.choose_packer("auto")
    lines.append(f"pack:   {packer.backend} ({packer.tool}): {packer.reason}")
    mounter = select.choose_mounter("auto")
    lines.append(f"mount:  {mounter.backend} ({mounter.tool}): {mounter.reason}")
    fuse = select.fuse_problem()
    lines.append(f"fuse:   {'usable' if fuse is None else 'NOT usable: ' + fuse}")
    from condainer.node import mount_mode

    private = mount_mode.problem()
    lines.append("mount mode (auto): " + ("namespace: unprivileged user namespaces are available, each user mounts "
                                          "privately" if private is None else f"host: {private}"))
    try:
        import mfusepy  # noqa: F401  (imported only to prove the Python FUSE backend can load)
        lines.append("python FUSE backend: mfusepy importable")
    except Exception as exc:  # a missing libfuse raises at import
        lines.append(f"python FUSE backend: NOT usable: {' '.join(str(exc).split())}")
    builders = []
    for exe in ("mamba", "conda", "micromamba"):
        if shutil.which(exe):
            builders.append(f"{exe} ({shutil.which(exe)})")
    if os.environ.get("CONDAINER_INSTALLER"):
        builders.append(f"installer $CONDAINER_INSTALLER={os.environ['CONDAINER_INSTALLER']}")
    if directory and (directory / "condainer.yml").exists():
        try:
            project = Project.load(directory)
            inst = conda.find_installer(project.directory, project.cfg.get("installer_url", ""))
            if inst:
                builders.append(f"installer {inst}")
        except Exception:
            pass
    rattler_ok = importlib.util.find_spec("rattler") is not None
    builders.append("embedded py-rattler builder" + ("" if rattler_ok else " (NOT importable)"))
    builders.append(f"pip venv of {getattr(sys, '_base_executable', sys.executable)}")
    lines.append("environment builders: " + "; ".join(builders))
    lines.extend(_virtual_package_lines(detection, directory))
    return lines, fuse is None


def _virtual_package_lines(detection: virtual.Detection, directory: Path | None) -> list[str]:
    """What this machine has, and, when the project's condainer.yml or CONDA_OVERRIDE_* ask for
    something else, what builds here solve for."""
    try:
        detected = detection.result()
    except CondainerError as exc:
        return [f"virtual packages: NOT detected: {exc.message}"]
    lines = [f"virtual packages here: {virtual.describe(detected)}"]
    try:
        configured = {}
        if directory and (directory / config.CONFIG_NAME).exists():
            configured = config.load(directory).get(YML_KEY) or {}
        wanted = virtual.requested(configured)
    except CondainerError as exc:
        return [*lines, f"virtual packages to solve for: NOT known: {exc.message}"]
    if wanted:
        lines.append(f"virtual packages to solve for: {virtual.describe(virtual.apply(detected, wanted))}")
    return lines


def cache(directory: Path) -> int:
    """Read the whole image once so the page cache holds it before a large job starts."""
    project = Project.load(directory)
    image = check_image_file(project.image)
    size = image.stat().st_size
    progress = console.Progress(f"caching {image.name}", total_bytes=size)
    chunk = 8 << 20
    try:
        with open(image, "rb", buffering=0) as fh:
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_WILLNEED)
            while data := fh.read(chunk):
                progress.update(nbytes=len(data))
    finally:
        progress.close()
    console.info(f"{image} ({console.human_bytes(size)}) read into the page cache")
    return size


__all__ = ["status", "format_status", "prereq", "cache", "ToolMissing"]
