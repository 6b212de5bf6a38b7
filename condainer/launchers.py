"""The launchers in ``<project>/bin/``: one small Python file per executable of the environment.

Jupyter, IDEs, workflow engines and batch scripts take the path of an interpreter; they cannot
`source ./activate` first. ``<project>/bin/python app.py`` does what `cnd exec -- python app.py`
does (launch.py), from any directory, through a symlink or from PATH. A launcher is a plain file the
user can read: an interpreter line and absolute paths fixed when it was written (the python cnd runs
on, the condainer package that wrote it, the project), so it starts without site and without a
search for condainer. Moving the project is detected at start; `cnd launchers` writes them again.
"""

from __future__ import annotations

import os
import sys

import condainer
from condainer.layout import write_atomically

MARK = "# condainer launcher"
SHEBANG_MAX = 255  # Linux reads at most 256 bytes of the interpreter line (128 before 5.1)


def executables(bin_dir: str) -> list[str]:
    """The names in BIN_DIR that can be run (files or symlinks to files, executable), sorted."""
    try:
        names = os.listdir(bin_dir)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        path = os.path.join(bin_dir, name)
        if name.startswith(".") or os.path.isdir(path) or not os.access(path, os.X_OK):
            continue
        found.append(name)
    return sorted(found)


def chosen(available: list[str], setting: str | list[str]) -> tuple[list[str], list[str]]:
    """(names to write, names asked for that the environment lacks) for `launchers:` SETTING."""
    if setting == "all":
        return list(available), []
    if setting == "none":
        return [], []
    have = set(available)
    return [n for n in setting if n in have], [n for n in setting if n not in have]


def _interpreter_lines() -> str:
    """The interpreter line: the python cnd runs on, with -I -S (no site: the launcher sets its own
    path). A path the kernel cannot take on a #! line (spaces, too long) goes through /bin/sh with a
    line that is an exec in sh and a harmless string expression in Python."""
    python = sys.executable
    line = f"#!{python} -IS"
    if len(line) <= SHEBANG_MAX and not any(c.isspace() for c in python):
        return line + "\n"
    quoted = "'" + python.replace("'", "'\"'\"'") + "'"
    return f"#!/bin/sh\n'exec' {quoted} '-IS' \"$0\" \"$@\"\n"


def package_root() -> str:
    """The directory holding the condainer package that is running now (an editable install or a
    checkout on PYTHONPATH included): the launcher imports this one, whatever -I hides."""
    return os.path.dirname(os.path.dirname(os.path.abspath(condainer.__file__)))


def text(project_dir: str, name: str) -> str:
    """The launcher of NAME for PROJECT_DIR."""
    root = package_root()
    # The writer's other paths (its site-packages: the Python FUSE backend's modules) go last, so
    # the standard library and condainer are found first and a plain start searches nothing more.
    # (sys.path[0] is the writer's script directory or, for -m, its working directory: not wanted)
    extra = [p for p in sys.path[1:] if p and p != root and os.path.isabs(p)]
    return (
        _interpreter_lines()
        + f"{MARK} for {name!r} of {project_dir!r}: `cnd exec -- {name} ARGS...` as one program.\n"
        "# Written by `cnd build` / `cnd launchers`; run `cnd launchers` again after moving the project.\n"
        "import sys\n"
        f"sys.path.insert(0, {root!r})\n"
        f"sys.path += [p for p in {extra!r} if p not in sys.path]\n"
        "try:\n"
        "    from condainer.launch import main\n"
        "except ImportError as exc:\n"
        f"    sys.exit(f'cnd: error: {{sys.argv[0]}}: cannot import condainer from {root}: {{exc}}: '\n"
        "             'reinstall it, or run `cnd launchers` in the project directory')\n"
        f"main({project_dir!r}, {name!r})\n"
    )


def is_launcher(path: str) -> bool:
    """True when PATH is a file we wrote (we never replace or remove anything else)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError:
        return False
    return MARK.encode() in head


def _write(path: str, data: str) -> None:
    """Write PATH atomically, mode 0755 (a reader of the directory sees the old file or the new)."""
    write_atomically(path, data.encode("utf-8", "surrogateescape"), mode=0o755)


def write(project_dir: str, names: list[str]) -> tuple[list[str], list[str]]:
    """Write the launchers of NAMES into PROJECT_DIR/bin and remove launchers of other names.
    Returns (written, skipped: files of those names that are not ours, left as they are)."""
    from condainer.errors import CondainerError

    bin_dir = os.path.join(project_dir, "bin")
    written, skipped = [], []
    try:
        os.makedirs(bin_dir, exist_ok=True)
        for name in names:
            path = os.path.join(bin_dir, name)
            if os.path.lexists(path) and not is_launcher(path):
                skipped.append(name)
                continue
            _write(path, text(project_dir, name))
            written.append(name)
        keep = set(names)
        for other in os.listdir(bin_dir):
            path = os.path.join(bin_dir, other)
            if other not in keep and not other.startswith(".") and is_launcher(path):
                os.unlink(path)
    except OSError as exc:
        raise CondainerError(f"cannot write launchers into {bin_dir}: {exc.strerror}") from exc
    return written, skipped


def update(project_dir: str, env_bin: str, setting: str | list[str]) -> list[str]:
    """Write the launchers that SETTING (`launchers:` of condainer.yml) asks for, for the
    executables in ENV_BIN; warn about names the environment lacks and files that are not ours."""
    from condainer import console

    names, missing = chosen(executables(env_bin), setting)
    for name in missing:
        print(f"cnd: warning: launchers: {name} is not an executable of the environment; no launcher",
              file=sys.stderr)
    written, skipped = write(project_dir, names)
    for name in skipped:
        print(f"cnd: warning: {os.path.join(project_dir, 'bin', name)} is not a condainer launcher; "
              "left as it is", file=sys.stderr)
    if written:
        console.info(f"wrote {len(written)} launcher(s) into {os.path.join(project_dir, 'bin')} "
                     f"(e.g. {os.path.join(project_dir, 'bin', 'python' if 'python' in written else written[0])})")
    return written


def rewrite(directory: os.PathLike | str, *, backend: str | None = None) -> list[str]:
    """`cnd launchers`: write the launchers again for the built image (after moving the project, or
    changing `launchers:`), reading its executables from the mounted image."""
    from condainer import runner
    from condainer.project import Project

    project = Project.load(directory, remember_for_exec=True)
    project_dir = str(project.directory)
    with runner.mounted(project_dir, backend=backend) as layout:
        return update(project_dir, os.path.join(layout.env_prefix, "bin"), project.cfg["launchers"])
