"""How `cnd build` uses condainer.lock: the checks before a `--locked` build, the one fixed time of
a build, and step 4, which records what was installed (lockfile.py holds the document itself).

A build is repeatable when every input is pinned and nothing records when or where it ran. The
lock pins the packages; its ``source_date_epoch`` pins the time: it is exported as
SOURCE_DATE_EPOCH to the installers (pip and py_compile then write hash-checked .pyc files instead
of ones stamped with the source's mtime) and to the packer (the image's time, and no file newer).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from condainer.build import lockfile
from condainer.build.environments import pip, pipsources, settle, virtual
from condainer.errors import BuildError, ConfigError
from condainer.project.virtual_packages import YML_KEY

if TYPE_CHECKING:
    from condainer.build.plan import BuildPlan
    from condainer.project.directory import Project

SOURCE_KEYS = ("environment_yml", "requirements_txt")


def current_sources(project: Project) -> dict[str, str]:
    """sha256 of the environment files as they are now, by the name condainer.yml gives them."""
    return lockfile.sources({str(project.cfg.get(key)): project.path_of(key) for key in SOURCE_KEYS
                             if project.cfg.get(key)})


def lock_path(project: Project) -> Path:
    return project.directory / lockfile.LOCK_NAME


def stale_reason(project: Project, lock: dict[str, Any]) -> str | None:
    """Why LOCK no longer says what a solve for PROJECT would be asked now, or None: its environment
    files changed, or (for a conda environment) the virtual packages asked for by condainer.yml's
    virtual_packages or a CONDA_OVERRIDE_* variable. A bad variable is a ConfigError."""
    path = lock_path(project)
    why = lockfile.stale_reason(lock, current_sources(project), path)
    if why or not _solves_conda(project):
        return why
    locked = lock["virtual_overrides"] if "virtual_overrides" in lock else virtual.asked_of(
        lock.get("virtual_packages") or [])
    changed = virtual.changes(locked, virtual.requested(project.cfg.get(YML_KEY) or {}))
    if not changed:
        return None
    return (f"virtual packages changed since {path.name} was written: {', '.join(changed)}: "
            f"run `cnd lock` to update it (or build without --locked)")


def _solves_conda(project: Project) -> bool:
    """Virtual packages matter to a conda solve only: a pip-only project has none."""
    env_yml = project.path_of("environment_yml")
    return env_yml is not None and env_yml.is_file()


def for_build(project: Project, build_plan: BuildPlan) -> dict[str, Any]:
    """The project's lock, checked for a `--locked` build here: a one-line ConfigError when the
    environment files changed since it was written, or it was made for another platform, host
    Python (venvs) or installer."""
    path = lock_path(project)
    lock = lockfile.load(path)
    why = stale_reason(project, lock)
    if why:
        raise ConfigError(why)
    loose = lockfile.unpinned(lock)
    if loose:
        raise ConfigError(f"{path.name} has no URL and sha256 for {', '.join(loose[:3])}"
                          f"{' and more' if len(loose) > 3 else ''} (their installer recorded none): "
                          f"it cannot be installed exactly")
    here = lockfile.this_platform()
    if lock.get("platform") != here:
        raise ConfigError(f"{path.name} is for {lock.get('platform')}, this machine is {here}: "
                          f"run `cnd lock` here to lock for it")
    if build_plan.env is None:
        want, have = lock.get("host_python") or {}, pip.host_python_record()
        if want != have:
            raise ConfigError(f"{path.name} was made with the host Python {want.get('executable')} "
                              f"({want.get('version')}), this is {have['executable']} ({have['version']}): "
                              f"a venv image needs the same one (or run `cnd lock`)")
    if build_plan.installer:
        recorded = (lock.get("installer") or {}).get("sha256")
        if recorded and recorded != lockfile.file_sha256(build_plan.installer):
            raise ConfigError(f"{path.name} was made with another installer than {build_plan.installer.name}: "
                              f"run `cnd lock` to lock with this one")
    return lock


def installing_line(lock: dict[str, Any]) -> str:
    """What `cnd build --locked` prints where a solving build prints what it solves for."""
    when = datetime.datetime.fromtimestamp(lock["source_date_epoch"], datetime.timezone.utc)
    return f"installing condainer.lock of {when:%Y-%m-%d %H:%M} UTC ({lockfile.summary(lock)}): no solve"


def epoch(lock: dict[str, Any] | None) -> int:
    """The build's one time: the lock's; else $SOURCE_DATE_EPOCH if the user set it; else now."""
    if lock is not None:
        return int(lock["source_date_epoch"])
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if value.isdigit():
        return int(value)
    return int(time.time())


def staged_epoch(staging: Path, default: int) -> int:
    """The time recorded in the staging directory's lock (a `--steps 5` run packs what an earlier
    run installed, with that run's time), else DEFAULT."""
    try:
        return int(lockfile.parse((staging / lockfile.IN_IMAGE).read_bytes(), "staged lock")["source_date_epoch"])
    except (OSError, ConfigError, KeyError, ValueError):
        return default


@contextlib.contextmanager
def reproducible(seconds: int) -> Iterator[None]:
    """Export SOURCE_DATE_EPOCH=SECONDS (the installers and packer we start inherit it), keep
    Python from writing .pyc files on import (their header would hold a source mtime) and fix
    PYTHONHASHSEED: the .pyc files pip compiles marshal frozenset constants (``x in {"a", "b"}``)
    in string-hash order, which otherwise changes from run to run. All are put back afterwards."""
    saved = {k: os.environ.get(k) for k in ("SOURCE_DATE_EPOCH", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED")}
    os.environ["SOURCE_DATE_EPOCH"] = str(seconds)
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    os.environ["PYTHONHASHSEED"] = "0"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def pip_options(build_plan: BuildPlan) -> list[str]:
    """Where the pip steps were told to find packages (--index-url, --find-links, ...) by
    environment.yml's pip: section and requirements.txt: a --locked build looks there too."""
    found = []
    if build_plan.env is not None and build_plan.env.pip_requirements:
        found += pipsources.index_options(build_plan.env.pip_requirements, build_plan.env.path.parent)
    if build_plan.requirements is not None:
        found += pipsources.index_options(build_plan.requirements.read_text().splitlines(),
                                          build_plan.requirements.parent)
    return list(dict.fromkeys(found))


def finish(project: Project, build_plan: BuildPlan, staging: Path, lock: dict[str, Any] | None,
           seconds: int) -> None:
    """Step 4: read back what was installed; store the lock in the image and beside condainer.yml.
    A `--locked` build stores the project's lock as it is, once the environment matches it."""
    settle.pin_history_times(staging, seconds)
    if build_plan.env is None:
        settle.pin_copied_times(staging / "bin", seconds)
    installer = None
    if build_plan.installer:
        installer = {"name": build_plan.installer.name, "sha256": lockfile.file_sha256(build_plan.installer)}
    made = lockfile.make(
        staging,
        sources_=current_sources(project),
        virtual_packages=virtual.records(build_plan.virtual_packages),
        virtual_overrides=virtual.asked(virtual.requested(build_plan.virtual_config)) if build_plan.env else {},
        python=pip.host_python_record() if build_plan.env is None else None,
        builder=build_plan.describe(),
        epoch=seconds,
        installer=installer,
        pip_options=pip_options(build_plan),
    )
    if lock is None:
        for p in made["pip"]:
            if p.get("directory") == "built":
                p["wheel_sha256"] = pip.wheel_sha256(staging, pipsources.directory_of(p))
    for note in pipsources.notes(made["pip"]):
        print(f"cnd: note: {note}", file=sys.stderr)
    loose = lockfile.unpinned(made)
    if loose and lock is None:
        print(f"cnd: warning: {build_plan.describe()} recorded no URL or sha256 for {', '.join(loose[:3])}"
              f"{' and more' if len(loose) > 3 else ''}: {lockfile.LOCK_NAME} cannot pin them", file=sys.stderr)
    if lock is not None:
        differs = lockfile.difference(lock, made)
        if differs:
            raise BuildError(f"the environment built differs from {lockfile.LOCK_NAME}: {differs}")
        data = lock_path(project).read_bytes()
    else:
        data = lockfile.render(made)
    inside = staging / lockfile.IN_IMAGE
    inside.parent.mkdir(mode=0o755, exist_ok=True)
    lockfile.write(inside, data)
    if lock is None:
        lockfile.write(lock_path(project), data)
