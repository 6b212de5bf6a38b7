"""The `cnd` program: `cnd exec` and `cnd mount` go straight to the runner, every other command
through click.

Every rank of a job starts `cnd exec`, usually from a venv on the parallel file system, so its start
is paid thousands of times (and `source ./activate` runs `cnd mount` in every job script): reading
these two command lines by hand saves importing click and the whole command tree (see README, "What
cnd exec costs"). Any command line this reader is not sure of
(help, an unknown option, a missing command) goes to click, so its answers stay click's.
"""

import os
import sys

from condainer.errors import run_reporting_errors
from condainer.project.layout import BACKENDS, MOUNT_MODES


class Request:
    """`cnd [-q] [-y] [-d DIR] exec [--backend B] [--mount-mode M] [--] CMD...` or
    `... mount [--backend B] [-p]`, taken apart."""

    __slots__ = ("name", "directory", "quiet", "dryrun", "backend", "command", "print_path", "mount_mode")

    def __init__(self, name: str, directory: str, quiet: bool, dryrun: bool, backend: str | None,
                 command: list[str], print_path: bool = False, mount_mode: str | None = None) -> None:
        self.name = name
        self.directory = directory
        self.quiet = quiet
        self.dryrun = dryrun
        self.backend = backend
        self.command = command
        self.print_path = print_path
        self.mount_mode = mount_mode


def _global_flags(args: list[str]) -> tuple[int, bool, bool, str | None] | None:
    """(index of the sub-command, quiet, dryrun, directory) for the flags before it, or None."""
    quiet = dryrun = False
    directory = None
    i = 0
    while i < len(args) and args[i] not in ("exec", "mount"):
        arg = args[i]
        if arg in ("-q", "--quiet"):
            quiet = True
        elif arg in ("-y", "--dryrun"):
            dryrun = True
        elif arg in ("-qy", "-yq"):
            quiet = dryrun = True
        elif arg in ("-d", "--directory") and i + 1 < len(args):
            i += 1
            directory = args[i]
        elif arg.startswith("--directory="):
            directory = arg[len("--directory=") :]
        elif arg.startswith("-d") and not arg.startswith("--"):
            directory = arg[2:]
        else:
            return None
        i += 1
    if i == len(args) or directory == "" or (directory is not None and os.path.isfile(directory)):
        return None  # no lean sub-command; or -d names a file, which click reports
    return i, quiet, dryrun, directory


def parse(args: list[str]) -> Request | None:
    """ARGS as a plain exec or mount request, or None when they are anything else or anything
    unusual (click then reads them)."""
    flags = _global_flags(args)
    if flags is None:
        return None
    i, quiet, dryrun, directory = flags
    name = args[i]
    i += 1
    backend, print_path, mode = None, False, None
    while i < len(args):
        arg = args[i]
        if arg == "--backend" and i + 1 < len(args):
            backend = args[i + 1]
            i += 2
            continue
        if arg == "--mount-mode" and name == "exec" and i + 1 < len(args):
            mode = args[i + 1]
            i += 2
            continue
        if arg.startswith("--backend="):
            backend = arg[len("--backend=") :]
        elif arg.startswith("--mount-mode=") and name == "exec":
            mode = arg[len("--mount-mode=") :]
        elif name == "mount" and arg in ("-p", "--print"):
            print_path = True
        elif name == "exec" and arg == "--":
            i += 1
            break
        elif arg.startswith("-") or name == "mount":
            return None  # --help, or an option or argument click decides about
        else:
            break
        i += 1
    command = args[i:] if name == "exec" else []
    if command[:1] == ["--"]:
        command = command[1:]  # `cnd exec -- -- CMD`, as click passes it on
    if (name == "exec" and not command) or (backend is not None and backend not in BACKENDS) \
            or (mode is not None and mode not in MOUNT_MODES):
        return None
    return Request(name, os.path.abspath(directory or os.getcwd()), quiet, dryrun, backend, command, print_path,
                   mode)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``cnd`` (and ``python -m condainer``)."""
    args = sys.argv[1:] if argv is None else list(argv)
    request = parse(args)
    if request is None:
        from condainer.cli.commands import main as click_main

        click_main(args)
        return
    if request.quiet:
        from condainer import console

        console.set_quiet(True)

    def run() -> int:
        from condainer.node import runner

        if request.name == "exec":
            return runner.exec_command(request.directory, request.command, backend=request.backend,
                                       dryrun=request.dryrun, mount_mode=request.mount_mode)
        path = runner.mount_project(request.directory, backend=request.backend, dryrun=request.dryrun)
        if request.print_path:
            print(path, flush=True)
        return 0

    run_reporting_errors(run)
