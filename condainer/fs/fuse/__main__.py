"""The FUSE daemon's entry point: ``python -m condainer.fs.fuse [--ready-fd N] IMAGE MOUNTPOINT``.

Started by mount.py's ``mount_image``; reports "ok" (or the one-line reason it failed) through the
ready pipe once, logs to ``--log``, and serves until the mount goes away.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from condainer.errors import CondainerError
from condainer.fs.fuse.serve import serve
from condainer.fs.reader import SquashfsReader

log = logging.getLogger("condainer.fuse")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, serve the mount, return the exit status."""
    p = argparse.ArgumentParser(prog="python -m condainer.fs.fuse")
    p.add_argument("--ready-fd", type=int)
    p.add_argument("--log")
    p.add_argument("--allow-other", action="store_true")
    p.add_argument("--debug", action="store_true")
    p.add_argument("image")
    p.add_argument("mountpoint")
    args = p.parse_args(argv)
    tag = f"{os.getpid()} {args.mountpoint}"
    logging.basicConfig(
        filename=args.log,
        level=logging.DEBUG if args.debug else logging.INFO,
        format=f"%(asctime)s {tag}: %(message)s",
    )
    logging.getLogger("mfusepy").setLevel(logging.WARNING)

    sent = False

    def report(line: str) -> None:
        nonlocal sent
        if args.ready_fd is not None and not sent:
            sent = True
            try:
                os.write(args.ready_fd, (" ".join(line.split()) + "\n").encode())
                os.close(args.ready_fd)
            except OSError:
                pass

    try:
        reader = SquashfsReader(args.image)
        log.info("serving %s", args.image)
        serve(
            args.image,
            args.mountpoint,
            foreground=True,
            allow_other=args.allow_other,
            ready=lambda: report("ok"),
            reader=reader,
        )
    except CondainerError as e:
        log.error("%s", e.message)
        report(e.message)
        return 1
    except BaseException as e:  # the parent must hear something, whatever happened
        log.exception("FUSE daemon failed")
        report(f"FUSE daemon failed: {type(e).__name__}: {e}")
        return 1
    if not sent:
        report("FUSE loop ended before the mount was ready (see the log)")
        return 1
    log.info("unmounted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
