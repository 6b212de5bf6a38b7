"""The `cnd` program: `cnd exec` goes straight to the runner, every other command through click.

Every rank of a job starts `cnd exec`, usually from a venv on the parallel file system, so its start
is paid thousands of times: reading this command line by hand saves importing click and the whole
command tree (see README, "What cnd exec costs"). Any command line this reader is not sure of
(help, an unknown option, a missing command) goes to click, so its answers stay click's.
"""


import os
import sys

BACKENDS = ("auto", "native", "python")


class ExecRequest:
    """`cnd [-q] [-y] [-d DIR] exec [--backend B] [--] CMD...` taken apart."""

    __slots__ = ("directory", "quiet", "dryrun", "backend", "command")

    def __init__(self, directory: str, quiet: bool, dryrun: bool, backend: str | None, command: list[str]) -> None:
        self.directory = directory
        self.quiet = quiet
        self.dryrun = dryrun
        self.backend = backend
        self.command = command


def parse_exec(args: list[str]) -> ExecRequest | None:
    """ARGS as an exec request, or None when they are anything else or anything unusual."""
    quiet = dryrun = False
    directory = None
    i = 0
    while i < len(args) and args[i] != "exec":
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
        return None  # not exec; or -d names a file, which click reports
    i += 1
    backend = None
    while i < len(args):
        arg = args[i]
        if arg == "--backend" and i + 1 < len(args):
            backend = args[i + 1]
            i += 2
        elif arg.startswith("--backend="):
            backend = arg[len("--backend=") :]
            i += 1
        elif arg == "--":
            i += 1
            break
        elif arg.startswith("-"):
            return None  # --help, or an option click decides about
        else:
            break
    command = args[i:]
    if command[:1] == ["--"]:
        command = command[1:]  # `cnd exec -- -- CMD`, as click passes it on
    if not command or (backend is not None and backend not in BACKENDS):
        return None
    return ExecRequest(os.path.abspath(directory or os.getcwd()), quiet, dryrun, backend, command)


def _interrupt(signum, _frame):
    # SIGTERM (Slurm, kill, timeout) and SIGHUP (a closed terminal or ssh session) unwind like Ctrl-C,
    # so `finally` blocks release the mount, stop installer children and remove temporary files.
    raise KeyboardInterrupt


def handle_interrupting_signals() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, for every command."""
    try:
        import _signal as signal  # the C half: signal.py's enums cost more than exec itself
    except ImportError:  # pragma: no cover
        import signal  # type: ignore[no-redef]
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``cnd`` (and ``python -m condainer``)."""
    args = sys.argv[1:] if argv is None else list(argv)
    request = parse_exec(args)
    if request is None:
        from condainer.cli import main as click_main

        click_main(args)
        return
    from condainer.errors import CondainerError

    handle_interrupting_signals()
    if request.quiet:
        from condainer import console

        console.set_quiet(True)
    try:
        from condainer.runner import exec_command

        code = exec_command(request.directory, request.command, backend=request.backend, dryrun=request.dryrun)
    except CondainerError as exc:
        print(f"cnd: error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("cnd: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    sys.exit(code)
