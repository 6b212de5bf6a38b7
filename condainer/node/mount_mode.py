"""Which mount a command uses, and why: a private mount in a user namespace of its own
(private_mount.py), or the node's own mount table (host_mount.py). Asked for by `--mount-mode`,
$CONDAINER_MOUNT_MODE or condainer.yml's mount_mode; `auto` takes a namespace wherever the kernel
lets an unprivileged user make one and use FUSE in it, which is tried for real, in a child.
"""

from __future__ import annotations

import os

from condainer.errors import CondainerError, MountError
from condainer.project.layout import MOUNT_MODES


def problem() -> str | None:
    """Why a private mount cannot work here, or None. Tried for real in a short-lived child when
    the kernel's settings allow it (Ubuntu's AppArmor rule and seccomp filters say no only then)."""
    from condainer.backends.select import fuse_problem
    from condainer.node import userns
    from condainer.node.records import REGISTRY_ROOT

    reason = fuse_problem() or userns.sysctl_problem()
    if reason:
        return reason
    if not os.path.isdir(REGISTRY_ROOT) or not os.access(REGISTRY_ROOT, os.W_OK | os.X_OK):
        return f"{REGISTRY_ROOT} is missing or not writable (the node-local record of the mount lives there)"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only tries and exits
        code = 0
        try:
            userns.enter_new(os.getuid(), os.getgid())
        except OSError:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return "the kernel refused to create a user namespace (a security policy, e.g. AppArmor or seccomp)"
    return None


def requested_mode(requested: str | None, configured: str) -> tuple[str, str]:
    """(auto, namespace or host; where that came from): the flag REQUESTED, else
    $CONDAINER_MOUNT_MODE, else condainer.yml's `mount_mode` (CONFIGURED)."""
    wanted, source = requested, "--mount-mode"
    if not wanted:
        wanted, source = os.environ.get("CONDAINER_MOUNT_MODE"), "$CONDAINER_MOUNT_MODE"
    if not wanted:
        wanted, source = configured, "mount_mode of condainer.yml"
    if wanted not in MOUNT_MODES:
        raise CondainerError(f"{source}: {wanted!r} is not one of {', '.join(MOUNT_MODES)}", exit_code=2)
    return wanted, source


def choose_mode(requested: str | None, configured: str) -> tuple[str, str]:
    """('namespace' or 'host', why), as `cnd status` reports it: `auto` takes a namespace wherever
    the kernel allows it; a namespace asked for that cannot work is a MountError."""
    wanted, source = requested_mode(requested, configured)
    if wanted == "host":
        return "host", f"asked for by {source}"
    reason = problem()
    if wanted == "namespace":
        if reason:
            raise MountError(f"cannot mount in a private namespace ({source}): {reason}")
        return "namespace", f"asked for by {source}"
    if reason:
        return "host", f"no private namespace: {reason}"
    return "namespace", "unprivileged user namespaces are available"
