"""The `activate` and `deactivate` scripts of a project (bash and zsh), written by `cnd build`.

They hold absolute paths (the project, the cnd interpreter, the environment prefix) so they work from
any directory. `activate` mounts the image through cnd (an explicit mount: it stays until
`cnd umount`), saves what it changes, and activates; `deactivate` restores exactly what was saved.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

SAVED = ["PATH", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "CONDA_SHLVL", "VIRTUAL_ENV", "PYTHONHOME"]

_SAVE_FN = r"""_condainer_save() {
    for _cnd_v in "$@"; do
        eval "if [ -n \"\${$_cnd_v+x}\" ]; then _CONDAINER_OLD_$_cnd_v=\"\$$_cnd_v\"; else unset _CONDAINER_OLD_$_cnd_v; fi"
    done
}
"""

_RESTORE_FN = r"""_condainer_restore() {
    for _cnd_v in "$@"; do
        eval "if [ -n \"\${_CONDAINER_OLD_$_cnd_v+x}\" ]; then export $_cnd_v=\"\$_CONDAINER_OLD_$_cnd_v\"; unset _CONDAINER_OLD_$_cnd_v; else unset $_cnd_v; fi"
    done
}
"""


def _q(value: object) -> str:
    return shlex.quote(str(value))


def activate_text(project_dir: Path, prefix: Path, env_vars: dict[str, str], env_kind: str,
                  hooks: list[str]) -> str:
    cnd = f"{_q(sys.executable)} -m condainer"
    names = SAVED + sorted(env_vars)
    lines = [
        "# condainer: `source ./activate` (bash or zsh) mounts the image if needed and activates it.",
        "# Written by `cnd build`; undo with `source ./deactivate`.",
        'if [ -n "${_CONDAINER_ACTIVE:-}" ]; then',
        '    echo "condainer: $_CONDAINER_ACTIVE is active already: source its deactivate first" >&2',
        "    return 1 2>/dev/null || exit 1",
        "fi",
        f"{cnd} -q -d {_q(project_dir)} mount || {{ return 1 2>/dev/null || exit 1; }}",
        _SAVE_FN,
        f"_condainer_save {' '.join(names)}",
        f"_CONDAINER_SAVED_NAMES={_q(' '.join(names))}",
        f"export _CONDAINER_ACTIVE={_q(prefix)}",
        f'export PATH={_q(prefix / "bin")}"${{PATH:+:$PATH}}"',
        "unset PYTHONHOME",
    ]
    if env_kind == "venv":
        lines.append(f"export VIRTUAL_ENV={_q(prefix)}")
    elif env_kind == "conda":
        lines += [
            f"export CONDA_PREFIX={_q(prefix)}",
            f"export CONDA_DEFAULT_ENV={_q(prefix)}",
            "export CONDA_SHLVL=1",
        ]
        lines += [f"export {k}={_q(v)}" for k, v in sorted(env_vars.items())]
        lines += [f". {_q(prefix / 'etc/conda/activate.d' / h)}" for h in hooks]
    lines += [
        "unset _cnd_f _cnd_v",
        "unset -f _condainer_save",
        "hash -r 2>/dev/null || true",
        "",
    ]
    return "\n".join(lines)


def deactivate_text(prefix: Path, hooks: list[str]) -> str:
    lines = [
        "# condainer: `source ./deactivate` restores the environment from before `source ./activate`.",
        'if [ -z "${_CONDAINER_ACTIVE:-}" ]; then',
        '    echo "condainer: no condainer environment is active" >&2',
        "    return 1 2>/dev/null || exit 1",
        "fi",
        *[f". {_q(prefix / 'etc/conda/deactivate.d' / h)}" for h in hooks],
        _RESTORE_FN,
        "_condainer_restore_saved() {",
        "    # word splitting of the saved list is intended; zsh needs it asked for (undone on return)",
        '    [ -n "${ZSH_VERSION:-}" ] && setopt local_options sh_word_split',
        "    _condainer_restore $_CONDAINER_SAVED_NAMES",
        "}",
        "_condainer_restore_saved",
        "unset _CONDAINER_ACTIVE _CONDAINER_SAVED_NAMES _cnd_f _cnd_v",
        "unset -f _condainer_restore _condainer_restore_saved",
        "hash -r 2>/dev/null || true",
        "case $- in *i*) echo \"condainer: deactivated; run 'cnd umount' when no shell uses the environment\" >&2;; esac",
        "",
    ]
    return "\n".join(lines)


def conda_hooks(prefix: Path, which: str) -> list[str]:
    """Names of the etc/conda/{activate,deactivate}.d/*.sh scripts of PREFIX, in the order conda runs them."""
    d = prefix / "etc" / "conda" / which
    return sorted(p.name for p in d.glob("*.sh")) if d.is_dir() else []


def write_scripts(project_dir: Path, prefix: Path, env_vars: dict[str, str], staged: Path) -> list[Path]:
    """Write both scripts for PREFIX; what kind of env it is and which hooks it has is read from the
    staged copy STAGED (the same tree, before the staging directory is removed)."""
    from condainer.node.activation import kind

    env_kind = kind(staged)
    written = []
    for name, text in (
        ("activate", activate_text(project_dir, prefix, env_vars, env_kind, conda_hooks(staged, "activate.d"))),
        ("deactivate", deactivate_text(prefix, conda_hooks(staged, "deactivate.d"))),
    ):
        path = project_dir / name
        path.write_text(text)
        path.chmod(0o644)
        written.append(path)
    return written
