"""User-facing output: results on stdout; progress messages on stderr, silenced by -q; a tty-only progress line."""

import sys
import time

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def info(message: str) -> None:
    """A progress or status line for humans (stderr, so stdout stays parseable)."""
    if not _quiet:
        print(message, file=sys.stderr, flush=True)


def out(message: str) -> None:
    """A result line on stdout (what scripts read: paths, JSON, status). -q does not silence it: it
    is what the command was asked for; -q only silences progress."""
    print(message, flush=True)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


human_bytes = _human


class Progress:
    """A one-line progress display (items, bytes, rate) redrawn at most 10 times a second.

    Draws only when stderr is a terminal and -q is off, so logs and pipes stay clean.
    """

    def __init__(self, label: str, total_items: int | None = None, total_bytes: int | None = None) -> None:
        self.label = label
        self.total_items = total_items
        self.total_bytes = total_bytes
        self.items = 0
        self.bytes = 0
        self._start = time.monotonic()
        self._last = 0.0
        self._enabled = not _quiet and sys.stderr.isatty()

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
        size = _human(self.bytes) + (f"/{_human(self.total_bytes)}" if self.total_bytes else "")
        rate = _human(self.bytes / elapsed) + "/s"
        sys.stderr.write(f"\r{self.label}: {items} files, {size}, {rate}   ")
        sys.stderr.flush()

    def close(self) -> None:
        """Draw the final state and end the line; a second close does nothing."""
        if self._enabled:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._enabled = False
