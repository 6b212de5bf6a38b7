"""The launchers in ``<project>/bin/``: one small POSIX sh script per executable of the environment.

Jupyter, IDEs, workflow engines and batch scripts take the path of an interpreter; they cannot
`source ./activate` first. ``<project>/bin/python app.py`` does what `cnd exec -- python app.py`
does, from any directory, through a symlink or from PATH. Every rank of a job starts it, so once
this user's private mount of the image exists on the node (private_mount.py), the script joins it
with nsenter and becomes the environment's executable: no Python of cnd's starts, and only the
script and a stat of the image touch the project's file system. Otherwise (no holder yet, host
mode) it starts condainer (launch.py): the one that wrote it, or the user's own `cnd`. A launcher is
a plain file the user can read, with absolute paths fixed when it was written; moving the project
is detected by the slow path, and `cnd launchers` writes them again.
"""

from __future__ import annotations

import os
import shutil
import sys

from condainer import package_root
from condainer.fs.atomic import write_atomically

MARK = "# condainer launcher"


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


def sh_quote(text: str) -> str:
    """TEXT as one word of POSIX sh, in single quotes."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _activation(prefix: str) -> tuple[list[str], list[str]]:
    """(sh lines that activate PREFIX as activation.activated_environ does, its activate.d scripts)."""
    from condainer.node import activation

    lines = ["unset PYTHONHOME", 'PATH="$prefix/bin${PATH:+:$PATH}"; export PATH']
    what = activation.kind(prefix)
    if what == "venv":
        lines.append('VIRTUAL_ENV="$prefix"; export VIRTUAL_ENV')
    if what != "conda":
        return lines, []
    lines.append('CONDA_PREFIX="$prefix"; CONDA_DEFAULT_ENV="$prefix"; CONDA_SHLVL=1; '
                 "export CONDA_PREFIX CONDA_DEFAULT_ENV CONDA_SHLVL")
    for key, value in activation.env_vars(prefix).items():
        if key.replace("_", "a").isalnum() and not key[0].isdigit():
            lines.append(f"{key}={sh_quote(value)}; export {key}")
    return lines, activation.activate_scripts(prefix)


def _fast_path(layout, name: str, prefix: str) -> str:
    """Join this user's private mount on this node when its holder's record is there and valid:
    only node-local files are read (the record in /dev/shm, /proc) besides this file and a stat of
    the image, and no Python starts before the command. When there is no holder yet, one launcher
    (the one that creates ``RECORD.starting``) starts condainer, which makes it, and the launchers
    that start meanwhile (the other ranks of a job step) wait for that one, then join."""
    from condainer.mounts import system_tool
    from condainer.node import records

    nsenter = system_tool("nsenter")
    if not nsenter:
        return "# (no nsenter on this machine when the launcher was written: condainer joins by itself)\n"
    flock = system_tool("flock")

    lines, scripts = _activation(prefix)
    command = f'"$prefix/bin/{name}"' if os.sep not in name else sh_quote(name)
    if scripts:
        bash = shutil.which("bash") or "/bin/bash"
        sources = "".join(f". {sh_quote(s)} || {{ echo \"cnd: error: an activate.d script of {prefix} failed: "
                          f"{os.path.basename(s)}\" >&2; exit 1; }}; " for s in scripts)
        then = 'exec "$0" "$@"'
        command = f"{sh_quote(bash)} -c {sh_quote(sources + then)} {command}"
    record = os.path.join(records.REGISTRY_ROOT, ".condainer-$uid", f"{layout.uuid}-${{host%%.*}}")
    body = "\n".join("    " + line for line in lines)
    text = (
        "while read -r key uid _; do [ \"$key\" = Uid: ] && break; done </proc/self/status\n"
        "read -r host </proc/sys/kernel/hostname\n"
        f'record="{record}${{SLURM_STEP_ID:+-$SLURM_JOB_ID.$SLURM_STEP_ID}}"\n'
        "join() {  # become the command in the holder's namespace, if its record is valid\n"
        '    [ -O "${record%/*}" ] && [ -r . ] && { read -r pid start id mp <"$record"; } 2>/dev/null \\\n'
        f'        && [ "$mp" = {sh_quote(layout.mountpoint)} ] && ! [ "$image" -nt "$record" ] \\\n'
        f'        && [ "/proc/$pid/fd/{records.RECORD_FD}" -ef "$record" ] || return 0'
        "  # pid is the holder, not a reused one\n"
        f"{body}\n"
        f'    exec {sh_quote(nsenter)} --preserve-credentials -U -m -t "$pid" --wd=. -- {command} "$@"\n'
        "}\n"
        'join "$@"\n'
    )
    if flock:
        text += (
            'if [ -O "${record%/*}" ]; then  # no holder: one launcher starts condainer, the others wait for it\n'
            "    set -C\n"
            '    if { command exec 9>"$record.starting"; } 2>/dev/null; then\n'
            f"        set +C; {sh_quote(flock)} 9 && CONDAINER_STARTING_FD=9 && export CONDAINER_STARTING_FD\n"
            "    else\n"
            '        set +C\n'
            '        if { command exec 9<"$record.starting"; } 2>/dev/null; then\n'
            f'            {sh_quote(flock)} -s -w 60 9; exec 9<&-; join "$@"\n'
            "        fi\n"
            "    fi\n"
            "fi\n"
        )
    return text


def _slow_path(project_dir: str, name: str) -> str:
    """Start condainer (the one that wrote this launcher, or the user's own `cnd`), which mounts as
    the project says and then becomes the command."""
    root = package_root()
    # The writer's other paths (its site-packages: the Python FUSE backend's modules) go last, so
    # the standard library and condainer are found first and a plain start searches nothing more.
    # (sys.path[0] is the writer's script directory or, for -m, its working directory: not wanted)
    extra = [p for p in sys.path[1:] if p and p != root and os.path.isabs(p)]
    code = (
        "import sys\n"
        "sys.argv[:2] = sys.argv[1:2]\n"
        f"sys.path.insert(0, {root!r})\n"
        f"sys.path += [p for p in {extra!r} if p not in sys.path]\n"
        "try:\n"
        "    from condainer.launch import main\n"
        "except ImportError as exc:\n"
        f"    sys.exit(f'cnd: error: {{sys.argv[0]}}: cannot import condainer from {root}: {{exc}}: '\n"
        "             'reinstall it, or run `cnd launchers` in the project directory')\n"
        f"main({project_dir!r}, {name!r})\n"
    )
    python = sys.executable
    return (
        f"python={sh_quote(python)}\n"
        f'if [ -x "$python" ] && [ -r {sh_quote(os.path.join(root, "condainer", "launch.py"))} ]; then\n'
        f'    exec "$python" -IS -c {sh_quote(code)} "$0" "$@"\n'
        "fi\n"
        "if command -v cnd >/dev/null 2>&1; then  # the writer's condainer is not usable by this user\n"
        f"    exec cnd -d {sh_quote(project_dir)} exec -- {sh_quote(name)} \"$@\"\n"
        "fi\n"
        f'echo "cnd: error: $0: the condainer that wrote it ($python) cannot be used by you and no cnd is '
        'on PATH: install condainer, or run \\`cnd launchers\\` in the project with yours" >&2\n'
        "exit 1\n"
    )


def text(project_dir: str, name: str, prefix: str | None = None) -> str:
    """The launcher of NAME for PROJECT_DIR, a POSIX sh script; PREFIX is where the environment is
    readable now (the staging directory or the mounted image: the same path), to read how it is
    activated."""
    from condainer.node.runner import load_layout

    layout = load_layout(project_dir)
    prefix = prefix or layout.env_prefix
    return (
        "#!/bin/sh\n"
        f"{MARK} for {name!r} of {project_dir!r}: `cnd exec -- {name} ARGS...` as one program.\n"
        "# Written by `cnd build` / `cnd launchers`; run `cnd launchers` again after moving the project.\n"
        f"image={sh_quote(layout.image)}\n"
        f"prefix={sh_quote(prefix)}\n"
        + _fast_path(layout, name, prefix)
        + _slow_path(project_dir, name)
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


def write(project_dir: str, names: list[str], prefix: str | None = None) -> tuple[list[str], list[str]]:
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
            _write(path, text(project_dir, name, prefix))
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
    written, skipped = write(project_dir, names, os.path.dirname(os.path.abspath(env_bin)))
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
    from condainer.node import runner
    from condainer.project.directory import Project

    project = Project.load(directory, remember_for_exec=True)
    project_dir = str(project.directory)
    with runner.mounted(project_dir, backend=backend) as layout:
        return update(project_dir, os.path.join(layout.env_prefix, "bin"), project.cfg["launchers"])
