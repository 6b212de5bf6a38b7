"""What installers write about when they ran, pinned to the build's one time (step 4).

conda, mamba and micromamba append a ``==> 2024-05-01 12:00:00 <==`` header per transaction to
``conda-meta/history``: the wall clock of the build, so two builds of one lock would differ there.
The header gets the lock's time instead (what SOURCE_DATE_EPOCH gives every other time). Files
a venv copies from the host Python keep that Python's install time; they get the lock's time too.
"""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

from condainer.fs.atomic import umask, write_atomically

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
        write_atomically(str(history), pinned, mode=0o666 & ~umask())


def pin_copied_times(directory: Path, seconds: int) -> None:
    """Give the files of DIRECTORY that are older than SECONDS that time. Python 3.13's venv copies
    bin/Activate.ps1 with its mtime, the host Python's install time: an image of the same lock would
    then depend on when that Python was installed. Only files of our own (one link, not symlinks):
    the time of a hard link into a package cache would change the cache's file too."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_mtime < seconds:
            os.utime(entry.path, (seconds, seconds), follow_symlinks=False)
