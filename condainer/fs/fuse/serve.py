"""Serving one mount in this process: load libfuse, pick the adapter, run the loop until unmounted.

libfuse3 is served through the low-level adapter (lowlevel.py), libfuse2 through mfusepy's path API
(highlevel.py); ``CONDAINER_FUSE_API`` overrides the choice (policy.FuseSettings).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

from condainer.errors import ToolMissing
from condainer.fs.fuse.policy import FuseSettings, fuse_options
from condainer.fs.reader import SquashfsReader


def load_mfusepy() -> Any:
    """Import mfusepy bound to libfuse3 when it is installed (mfusepy itself prefers libfuse2 whenever
    both are, and its high-level layer only is served then), else to libfuse2.  A user's
    FUSE_LIBRARY_PATH or FUSE_LIBRARY_NAME is respected."""
    if not (os.environ.get("FUSE_LIBRARY_PATH") or os.environ.get("FUSE_LIBRARY_NAME")):
        from ctypes.util import find_library

        os.environ["FUSE_LIBRARY_NAME"] = "fuse3" if find_library("fuse3") else "fuse"
    try:
        import mfusepy
    except (OSError, AttributeError) as e:
        raise ToolMissing(f"libfuse not usable (install fuse3): {e}") from None
    return mfusepy


def fuse_api(mfusepy: Any, settings: FuseSettings) -> str:
    """ "low" (libfuse3's inode-based API, the fast one) or "high" (mfusepy's path-based FUSE
    class, for libfuse2); CONDAINER_FUSE_API=high|low overrides."""
    if settings.api is not None:
        return settings.api
    return "low" if mfusepy.fuse_version_major == 3 else "high"


@contextlib.contextmanager
def _libfuse_handles_signals() -> Iterator[None]:
    """Let libfuse end its loop (and unmount) on SIGINT, SIGTERM and SIGHUP.

    libfuse installs its handlers only where a signal is at its default disposition, and a
    Python-level handler (the CLI maps SIGTERM to KeyboardInterrupt) never runs while the main
    thread sits in libfuse's C loop: a foreground mount would ignore SIGTERM for good."""
    saved = {}
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            saved[signum] = signal.signal(signum, signal.SIG_DFL)
        except ValueError:  # not the main thread: libfuse's own handlers decide
            pass
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def serve(
    image: str,
    mountpoint: str,
    *,
    foreground: bool = True,
    allow_other: bool = False,
    ready: Callable[[], None] | None = None,
    reader: SquashfsReader | None = None,
    settings: FuseSettings | None = None,
) -> None:
    """Run the FUSE loop for ``image`` at ``mountpoint`` in this process until it is unmounted."""
    if settings is None:
        settings = FuseSettings.from_environ()
    mfusepy = load_mfusepy()
    if reader is None:
        reader = SquashfsReader(image)
    try:
        if fuse_api(mfusepy, settings) == "low":
            from condainer.fs.fuse.lowlevel import serve_lowlevel

            opts = fuse_options(image, settings, allow_other=allow_other)
            text = ",".join(k if v is True else f"{k}={v}" for k, v in opts.items())
            profiler = None
            if settings.profile:  # with CONDAINER_FUSE_THREADS=0
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            try:
                with _libfuse_handles_signals():
                    serve_lowlevel(reader, mountpoint, text, mfusepy, settings, ready=ready)
            finally:
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(settings.profile)
        else:
            from condainer.fs.fuse.highlevel import serve_highlevel

            with _libfuse_handles_signals():
                serve_highlevel(reader, image, mountpoint, mfusepy, settings, foreground=foreground,
                                allow_other=allow_other, ready=ready)
    finally:
        reader.close()
