"""How `cnd exec` starts the command: as our child with signals forwarded (host mode: we stay to
release the mount), or in our place with execve (a private mount needs nobody to wait). Either way
it gets our standard streams and descriptors, the shell's exit codes (127 not found, 126 not
runnable), and SIGPIPE and SIGXFSZ at their defaults, which Python changed."""

import os

from condainer.errors import CondainerError

try:
    # The C half of `signal`: signal.py builds enums at import, which costs more than all of exec.
    import _signal as signal
except ImportError:  # pragma: no cover - an interpreter without it
    import signal  # type: ignore[no-redef]

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
# Python ignores these; a command must start with the defaults (as subprocess's restore_signals does).
_DEFAULT_IN_CHILD = (signal.SIGPIPE, signal.SIGXFSZ)


def _terminal_delivers_sigint() -> bool:
    """True when we are in the terminal's foreground process group (so is the child)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def find_command(name: str, path: str) -> str:
    """NAME as the child will be started: searched in PATH (the activated one) unless it holds a
    slash; a one-line error with the shell's exit code 127 when it is nowhere."""
    if os.sep in name:
        return name
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    raise CondainerError(f"command not found: {name}", exit_code=127)


def run_child(executable: str, argv: list[str], env: dict[str, str]) -> int:
    """Run ARGV (EXECUTABLE resolved), forwarding signals to it; returns its exit code the way a shell
    reports it. The child inherits our standard streams and every descriptor we were given."""
    child: list[int] = []
    pending: list[int] = []

    def forward(signum, _frame):
        if signum == signal.SIGINT and _terminal_delivers_sigint():
            return  # Ctrl-C reached the child from the terminal already; a second one would be wrong
        if not child:
            pending.append(signum)  # arrived while the child was being started
            return
        try:
            os.kill(child[0], signum)
        except ProcessLookupError:
            pass

    # Handlers first, then the child: a signal in between is delivered once the child exists.
    previous = {s: signal.signal(s, forward) for s in FORWARDED_SIGNALS}
    try:
        try:
            child.append(os.posix_spawn(executable, argv, env, setsigdef=_DEFAULT_IN_CHILD))
        except OSError as exc:
            raise _cannot_start(argv[0], exc) from None
        for signum in pending:
            forward(signum, None)
        _, status = os.waitpid(child[0], 0)  # retried by Python when a handler interrupts it
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def replace_with(executable: str, argv: list[str], env: dict[str, str]) -> None:
    """Become the command (execve): signals, exit code, terminal and descriptors are then its own,
    with nothing in between. SIGPIPE and SIGXFSZ go back to their defaults, which Python changed."""
    for signum in _DEFAULT_IN_CHILD:
        signal.signal(signum, signal.SIG_DFL)
    try:
        os.execve(executable, argv, env)
    except OSError as exc:
        raise _cannot_start(argv[0], exc) from None


def _cannot_start(name: str, exc: OSError) -> CondainerError:
    """The one-line error, with the shell's exit code (127 not found, 126 not runnable)."""
    if isinstance(exc, FileNotFoundError):
        return CondainerError(f"command not found: {name}", exit_code=127)
    if isinstance(exc, PermissionError):
        return CondainerError(f"permission denied: {name}", exit_code=126)
    return CondainerError(f"cannot execute {name}: {exc.strerror}", exit_code=126)


