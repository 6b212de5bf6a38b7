"""User-facing output: results on stdout; progress messages on stderr, silenced by -q; a tty-only progress line."""

import sys

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


# The byte counts and the progress line are condainer.fs.progress's, which the pack writer shows too.
# Imported on first use: `cnd -q exec` and `cnd -q mount` import this module on every rank, and not
# condainer.fs.


def human_bytes(n: float) -> str:
    """N bytes for a person ("512 B", "1.5 MiB")."""
    from condainer.fs.progress import human_bytes as show

    return show(n)


def Progress(label: str, total_items: int | None = None, total_bytes: int | None = None):
    """A one-line progress display (items, bytes, rate) on a terminal, silent with -q: a
    condainer.fs.progress.Progress, named as that class (not annotated: naming it here would import
    condainer.fs)."""
    from condainer.fs.progress import Progress as ProgressLine

    return ProgressLine(label, total_items, total_bytes, quiet=_quiet)
