"""Shared test setup: subprocesses run the condainer of this tree, not whatever is installed."""

import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent

# `python -m condainer` in a child process must import this checkout (worktrees included).
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p
)
