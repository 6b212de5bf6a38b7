"""What installers write about when they ran, pinned to the build's one time (step 4).

conda, mamba and micromamba append a ``==> 2024-05-01 12:00:00 <==`` header per transaction to
``conda-meta/history``: the wall clock of the build, so two builds of one lock would differ there.
The header gets the lock's time instead (what SOURCE_DATE_EPOCH gives every other time).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

_HEADER = re.compile(rb"^==> \d{4}-\d\d-\d\d \d\d:\d\d:\d\d <==$", re.MULTILINE)


def pin_history_times(prefix: Path, seconds: int) -> None:
    """Rewrite the transaction times in PREFIX's conda-meta/history to SECONDS (UTC)."""
    history = prefix / "conda-meta" / "history"
    try:
        data = history.read_bytes()
    except OSError:
        return
    stamp = time.strftime("==> %Y-%m-%d %H:%M:%S <==", time.gmtime(seconds)).encode()
    pinned = _HEADER.sub(stamp, data)
    if pinned != data:
        # a new file, not an edit in place: the old one may be a hard link into a package cache
        tmp = history.with_name(".history.tmp")
        tmp.write_bytes(pinned)
        tmp.replace(history)
