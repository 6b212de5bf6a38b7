"""Where each pip package of an environment came from, as condainer.lock records it, and how a
`--locked` build installs exactly that again.

requirements.txt may hold anything pip takes. pip's ``--report`` says per package what it installed:
an archive with its sha256 (from an index, a URL or a path: ``archive_info``), a VCS checkout with
its commit id (``vcs_info``), or a local directory, built or editable (``dir_info``). The lock keeps
that, and a `--locked` build installs

- an index package as ``name==version --hash``, from the indexes requirements.txt named;
- an archive given by URL or path as ``name @ url --hash``;
- a VCS package at its commit (pip can check no hash of a checkout; the commit id is the check);
- a directory as it is: its built wheel's sha256 is in the lock and is compared before the install,
  so a directory that changed is refused; an editable install is a pointer to the directory outside
  the image and cannot be exact at all.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from condainer.errors import BuildError

# The options of a requirements file that say where pip finds packages: a --locked build needs the
# same ones to find the locked files of an index.
INDEX_OPTIONS = ("-i", "--index-url", "--extra-index-url", "--no-index", "-f", "--find-links", "--trusted-host")
PATH_OPTIONS = ("-f", "--find-links")


def entry(item: Mapping[str, Any]) -> dict[str, Any]:
    """The lock entry of one ``install`` item of a pip report."""
    meta, info = item.get("metadata") or {}, item.get("download_info") or {}
    name = str(meta.get("name") or "").lower().replace("_", "-")
    url = str(info.get("url") or "")
    found: dict[str, Any] = {"name": name, "version": str(meta.get("version")), "url": url}
    if "vcs_info" in info:
        vcs = info["vcs_info"]
        found.update(vcs=str(vcs.get("vcs") or "git"), commit=str(vcs.get("commit_id") or ""), sha256="")
        if not found["commit"]:
            raise BuildError(f"pip installed {name} from {url} without a commit id to lock")
        return found
    if "dir_info" in info:
        found.update(directory="editable" if (info["dir_info"] or {}).get("editable") else "built", sha256="")
        return found
    archive = info.get("archive_info") or {}
    sha = (archive.get("hashes") or {}).get("sha256") or _hash_field(archive.get("hash"))
    if not sha:
        raise BuildError(f"pip installed {name or '?'} from {url or '?'}, which has no sha256 to lock")
    found["sha256"] = sha
    if item.get("is_direct"):
        found["direct"] = True
    return found


def _hash_field(value: Any) -> str | None:
    """pip's older report field ``hash: "sha256=..."``."""
    if isinstance(value, str) and value.startswith("sha256="):
        return value.split("=", 1)[1]
    return None


def identity(p: Mapping[str, Any]) -> tuple[str, ...]:
    """What must be equal for an installed package to be the locked one: the archive's sha256, the
    commit of a checkout, the directory (and whether editable)."""
    what = p.get("sha256") or p.get("commit") or f"{p.get('directory')} {p.get('url')}"
    return (str(p.get("name")), str(p.get("version")), str(what))


def directory_of(p: Mapping[str, Any]) -> Path:
    """The local directory a ``directory`` entry was installed from."""
    return Path(unquote(urlparse(str(p["url"])).path))


def hashed_lines(packages: Iterable[Mapping[str, Any]], options: Iterable[str] = ()) -> str:
    """The packages pip can check by hash, as a requirements file for --require-hashes --no-deps."""
    lines = list(options)
    for p in packages:
        if p.get("commit") or p.get("directory"):
            continue
        where = f"{p['name']} @ {p['url']}" if p.get("direct") else f"{p['name']}=={p['version']}"
        lines.append(f"{where} --hash=sha256:{p['sha256']}")
    return "".join(line + "\n" for line in lines)


def unhashed_lines(packages: Iterable[Mapping[str, Any]]) -> str:
    """The packages pip cannot check by hash (checkouts at their commit, directories), as a
    requirements file for --no-deps."""
    lines = []
    for p in packages:
        if p.get("commit"):
            lines.append(f"{p.get('vcs', 'git')}+{p['url']}@{p['commit']}#egg={p['name']}")
        elif p.get("directory"):
            lines.append(("-e " if p["directory"] == "editable" else "") + str(p["url"]))
    return "".join(line + "\n" for line in lines)


def notes(packages: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per package the lock cannot promise to install exactly."""
    out = []
    for p in packages:
        if p.get("directory") == "editable":
            out.append(f"{p['name']} is an editable install of {directory_of(p)}: the image holds a pointer "
                       f"to that directory, not its files, so a --locked build cannot make it exact")
        elif p.get("directory"):
            out.append(f"{p['name']} is built from the directory {directory_of(p)}, which may change: "
                       f"a --locked build refuses it once its wheel differs from the locked one")
    return out


def index_options(lines: Iterable[str], base: Path) -> list[str]:
    """The INDEX_OPTIONS of requirement LINES, with a relative --find-links made absolute against
    BASE (the requirements file's directory), one option per line."""
    out = []
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if not line.startswith("-"):
            continue
        try:
            words = shlex.split(line.replace("=", " ", 1) if line.startswith("--") else line)
        except ValueError:
            continue
        if not words or words[0] not in INDEX_OPTIONS:
            continue
        option, values = words[0], words[1:]
        if option in PATH_OPTIONS and values and "://" not in values[0]:
            values = [os.path.normpath(base / values[0])]
        out.append(" ".join([option, *values]))
    return out
