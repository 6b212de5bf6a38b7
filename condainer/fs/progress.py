"""What a pack shows a person while it runs: status lines, byte counts, a one-line progress display.

Status lines go where the caller says (``Say``); condainer passes its console's, which -q silences,
and uses this module's byte counts and progress line for its own, so both look alike.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

Say = Callable[[str], None]  # takes one status line for a person


def say_on_stderr(message: str) -> None:
    """A status line on stderr, so stdout stays parseable (the default ``Say``)."""
    print(message, file=sys.stderr, flush=True)


def human_bytes(n: float) -> str:
    """N bytes for a person, in the unit that keeps the number below 1024 ("512 B", "1.5 MiB")."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class Progress:
    """A one-line progress display (items, bytes, rate) redrawn at most 10 times a second.

    Draws only when stderr is a terminal and not QUIET, so logs and pipes stay clean.
    """

    def __init__(
        self, label: str, total_items: int | None = None, total_bytes: int | None = None, *, quiet: bool = False
    ) -> None:
        self.label = label
        self.total_items = total_items
        self.total_bytes = total_bytes
        self.items = 0
        self.bytes = 0
        self._start = time.monotonic()
        self._last = 0.0
        self._enabled = not quiet and sys.stderr.isatty()

    def update(self, items: int = 0, nbytes: int = 0) -> None:
        self.items += items
        self.bytes += nbytes
        now = time.monotonic()
        if self._enabled and now - self._last >= 0.1:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._start, 1e-6)
        items = f"{self.items}" + (f"/{self.total_items}" if self.total_items else "")
        size = human_bytes(self.bytes) + (f"/{human_bytes(self.total_bytes)}" if self.total_bytes else "")
        rate = human_bytes(self.bytes / elapsed) + "/s"
        sys.stderr.write(f"\r{self.label}: {items} files, {size}, {rate}   ")
        sys.stderr.flush()

    def close(self) -> None:
        """Draw the final state and end the line; a second close does nothing."""
        if self._enabled:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._enabled = False
