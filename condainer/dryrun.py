"""Dry-run support: every side effect of a workflow goes through ``Actions.do`` so -y can list it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Actions:
    def __init__(self, dryrun: bool) -> None:
        self.dryrun = dryrun

    def do(self, description: str, fn: Callable[[], T]) -> T | None:
        """Run FN, or with -y only print what it would do."""
        if self.dryrun:
            print(f"dryrun: {description}", flush=True)
            return None
        return fn()
