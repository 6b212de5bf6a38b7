"""Shared test setup: subprocesses run the condainer of this tree, not whatever is installed."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

# `python -m condainer` in a child process must import this checkout (worktrees included).
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p
)

# Which mount mode `cnd exec`, the launchers and `cnd kernel` take in tests that do not ask for one:
# CONDAINER_TEST_MOUNT_MODE=host runs them on the node's own mount table (CI runs the exec-related
# modules a second time so); unset, `auto` decides (here: a private user namespace).
MOUNT_MODE = os.environ.get("CONDAINER_TEST_MOUNT_MODE", "")
if MOUNT_MODE:
    os.environ["CONDAINER_MOUNT_MODE"] = MOUNT_MODE
# An idle private mount waits this long for the next command (5 s for users): short, so that one
# test's namespace is gone before the next test looks.
os.environ.setdefault("CONDAINER_NS_LINGER", "0.3")


@pytest.fixture(autouse=True)
def _mount_mode_of_the_test(request, monkeypatch):
    """@pytest.mark.host_mode: the test is about the host's mount table (reference count, Slurm
    step rules, watcher, stale mounts), so it runs there whatever the suite's mode."""
    if request.node.get_closest_marker("host_mode"):
        monkeypatch.setenv("CONDAINER_MOUNT_MODE", "host")
