"""`cnd init` and `cnd build`: a project's files, then environment -> staging dir -> image.

The staging directory is the future mount point, ``<mount_base>/condainer-<uuid>``, so every absolute
path written by the installers stays valid when the image is mounted there. We create it with mode
0700 and remove it when done, also when a step fails; a path that exists and is not ours, is a
symlink, is mounted or is not empty is refused rather than touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from condainer import console, mounts
from condainer.backends.pack import pack
from condainer.build import locked as locking
from condainer.build import lockfile
from condainer.build import steps as buildsteps
from condainer.build.activate_scripts import write_scripts
from condainer.build.environments import conda, envfile, pip, pipsources, rattler
from condainer.build.environments.run import interrupts_deferred
from condainer.build.plan import BuildPlan, plan, solving_for_line
from condainer.build.sharing import open_to_project
from condainer.dryrun import Actions
from condainer.errors import BuildError, CondainerError, ConfigError, ImageError
from condainer.node import launchers
from condainer.node.safedir import ensure_private_dir
from condainer.node.sessions import build_lock
from condainer.project import config
from condainer.project.directory import Project

EXAMPLE_ENVIRONMENT = """\
# Example conda environment: replace it with your own environment.yml.
name: example
channels:
  - conda-forge
dependencies:
  - python=3.12
  - pip
  # - numpy
  # - pip:
  #   - six
"""

EXAMPLE_REQUIREMENTS = """\
# Example pip requirements: one package per line (installed into a venv of the host Python
# when there is no environment.yml).
six
"""


def init(directory: Path, *, pip_only: bool = False, non_conda: bool = False, dryrun: bool = False) -> None:
    """Create condainer.yml (refused if present) and an example environment file if there is none.
    NON_CONDA (upstream's `init -n`): no environment at all; the user puts an application into the
    staging directory, which is created now and printed, and `cnd build` packs it as it is."""
    actions = Actions(dryrun)
    if (directory / config.CONFIG_NAME).exists():
        raise ConfigError(f"{directory / config.CONFIG_NAME} already exists: this is a condainer project already")
    if not directory.is_dir():
        raise ConfigError(f"project directory {directory} does not exist")
    cfg = config.defaults()
    if os.environ.get("CONDAINER_INSTALLER"):
        cfg["installer_url"] = os.environ["CONDAINER_INSTALLER"]
    if non_conda:
        cfg["non_conda_application"] = True
    actions.do(f"write {directory / config.CONFIG_NAME} (uuid {cfg['uuid']})",
               lambda: config.save(directory, cfg, exclusive=True))
    if non_conda:
        staging = Project(directory.absolute(), cfg).mountpoint
        actions.do(f"create {staging} (mode 0700) for the application",
                   lambda: ensure_private_dir(staging, what="staging directory"))
        if not dryrun:
            console.info(f"put the application into {staging}, then run `cnd build`")
            console.out(str(staging))  # upstream prints it, for scripts
        return
    env_yml, req_txt = directory / "environment.yml", directory / "requirements.txt"
    if pip_only:
        if not req_txt.exists():
            actions.do(f"write example {req_txt}", lambda: _write_new(req_txt, EXAMPLE_REQUIREMENTS))
    elif not env_yml.exists() and not req_txt.exists():
        actions.do(f"write example {env_yml}", lambda: _write_new(env_yml, EXAMPLE_ENVIRONMENT))
    if not dryrun:  # the dryrun: lines above said what it would have written
        console.info(f"initialized condainer project in {directory}; edit the environment files, then run `cnd build`")


def _write_new(path: Path, text: str) -> None:
    with open(path, "x") as fh:  # never overwrite a user's file
        fh.write(text)


def _prepare_staging(staging: Path, *, fresh: bool = True, non_conda: bool = False) -> None:
    """Create the staging dir (0700) or accept an empty one that we own; refuse anything else.
    Not FRESH (`--steps` without 1 and 2, or a non_conda_application): it must hold what an
    earlier run (or the user) put there."""
    current = mounts.state(staging)
    if current != "unmounted":
        raise BuildError(f"{staging} is mounted: run `cnd umount` before building")
    if not fresh:
        if not os.path.isdir(staging) or os.path.islink(staging) or not any(staging.iterdir()):
            hint = ("put the application there (`cnd init -n` creates it)" if non_conda
                    else "run steps 1 and 2 first (`cnd build --steps 1,2,3,4`)")
            raise BuildError(f"staging directory {staging} is missing or empty: {hint}")
        ensure_private_dir(staging, what="staging directory")
        return
    if os.path.lexists(staging):
        st = os.lstat(staging)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and any(staging.iterdir()):
            raise BuildError(f"staging directory {staging} exists and is not empty "
                             f"(left over from an interrupted build?): remove it, then build again")
    ensure_private_dir(staging, what="staging directory")


def _remove_staging(staging: Path) -> None:
    """Remove the staging tree; installers leave read-only directories, so make them writable first."""
    def onerror(func, path, exc_info):
        # Only the parent directory's mode matters for unlinking; files may be hard links into a
        # package cache, whose modes we must not change.
        try:
            os.chmod(os.path.dirname(path), 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
        except OSError:
            pass
        func(path)

    if os.path.lexists(staging) and not os.path.islink(staging) and mounts.find_mount(staging) is None:
        shutil.rmtree(staging, onerror=onerror)


@contextlib.contextmanager
def _scratch(staging: Path) -> Iterator[Path]:
    """A directory for the files we hand an installer, at a fixed path: frontends write the command
    line into conda-meta/history, and a random temporary name there would differ between builds."""
    path = staging / ".condainer" / "scratch"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when empty: the pip reports may be there


def _base_step(build_plan: BuildPlan, staging: Path) -> None:
    """Step 1: the base environment (upstream: the Miniforge installer)."""
    if build_plan.env is None:
        pip.create_venv(staging)
    elif build_plan.installer:
        conda.run_installer(build_plan.installer, staging, build_plan.virtual_config)
    else:
        console.info(f"      nothing to do: {build_plan.describe()} creates the environment in step 2")


def _conda_step(project: Project, build_plan: BuildPlan, staging: Path, lock: dict | None) -> None:
    """Step 2: environment.yml's conda packages (solved, or LOCK's exactly), then its pip: section."""
    env = build_plan.env
    if env is None:
        console.info("      nothing to do: no environment.yml")
        return
    with _scratch(staging) as tmp:
        explicit = None
        if lock is not None:
            explicit = tmp / "explicit.txt"
            explicit.write_text(lockfile.explicit(lock))
        # Our pip step installs the pip: section for every builder, so that its report is locked.
        env_yml = envfile.without_pip(env, tmp / env.path.name) if env.pip_requirements else env.path
        if build_plan.installer:
            conda.install_with_installer(None, env_yml, staging, project.cfg.get("conda_exe", ""),
                                         build_plan.virtual_config, explicit)
        elif build_plan.conda_exe:
            conda.create_with_exe(build_plan.conda_exe, env_yml, staging, build_plan.virtual_config, explicit)
        else:
            rattler.install_conda_packages(env, staging, build_plan.virtual_packages, lock)
    if env.pip_requirements and lock is None:
        _pip_section(env, staging)


def _pip_step(build_plan: BuildPlan, staging: Path, lock: dict | None) -> None:
    """Step 3: requirements.txt (or, from a lock, every pip package of it, hash-checked)."""
    if lock is not None:
        if not lock.get("pip"):
            console.info("      nothing to do: condainer.lock has no pip packages")
            return
        _check_directories(staging, lock)
        with _scratch(staging) as tmp:
            hashed = tmp / "requirements-locked.txt"
            hashed.write_text(pipsources.hashed_lines(lock["pip"], lock.get("pip_options") or []))
            unhashed = tmp / "requirements-locked-unhashed.txt"
            unhashed.write_text(pipsources.unhashed_lines(lock["pip"]))
            if any(not line.startswith("-") for line in hashed.read_text().splitlines()):
                pip.pip_install(staging, hashed, locked=True)
            if unhashed.read_text():
                pip.pip_install(staging, unhashed, locked=True, hashes=False)
    elif build_plan.requirements:
        pip.pip_install(staging, build_plan.requirements)
    else:
        console.info("      nothing to do: no requirements.txt")


def _check_directories(staging: Path, lock: dict) -> None:
    """Before a --locked install: every directory the lock built a wheel from must build the same
    wheel now (a one-line ConfigError names the first that does not)."""
    for p in lock["pip"]:
        if p.get("directory") == "built" and p.get("wheel_sha256"):
            where = pipsources.directory_of(p)
            if not where.is_dir():
                raise ConfigError(f"{where} ({p['name']} of {lockfile.LOCK_NAME}) is gone: run `cnd lock` to update it")
            if pip.wheel_sha256(staging, where) != p["wheel_sha256"]:
                raise ConfigError(f"{where} changed since {lockfile.LOCK_NAME} was written (the wheel of "
                                  f"{p['name']} it builds is another): run `cnd lock` to update it")


def _pip_section(env: envfile.EnvironmentFile, prefix: Path) -> None:
    """The `pip:` list of environment.yml, installed with the environment's own pip."""
    if not (prefix / "bin" / "python").exists():
        raise BuildError(f"{env.path.name} has a pip: section but the environment has no python")
    # Beside the yml, so relative entries (`-e ./src`) resolve as conda's do.
    req = env.path.parent / f".condainer-pip-{os.getpid()}.txt"
    req.write_text("\n".join(env.pip_requirements) + "\n")
    try:
        pip.pip_install(prefix, req)
    finally:
        req.unlink(missing_ok=True)


def build(directory: Path, *, backend: str | None = None, force: bool = False, dryrun: bool = False,
          steps: frozenset[int] = buildsteps.ALL, locked: bool = False) -> Path:
    """Build the project's environment and pack it into ``<uuid>.squashfs``; returns the image path.
    STEPS: upstream's step numbers to run (steps.py); LOCKED: install condainer.lock, no solve."""
    project = Project.load(directory)
    # Two builds of one project on one node would share the staging dir: the second must not start.
    with contextlib.nullcontext() if dryrun else build_lock(project.state_dir):
        return _build(project, backend=backend, force=force, dryrun=dryrun, steps=steps, locked=locked)


def lock(directory: Path, *, dryrun: bool = False) -> Path:
    """`cnd lock`: solve and install into the staging directory, write condainer.lock, pack nothing."""
    if Project.load(directory).cfg.get("non_conda_application"):
        # (and its step 7 would remove the application the user put into the staging directory)
        raise ConfigError("a non_conda_application project has no lock: its application is packed as it is")
    build(directory, dryrun=dryrun, steps=buildsteps.LOCK_ONLY)
    return Path(directory).absolute() / lockfile.LOCK_NAME


def _build(project: Project, *, backend: str | None, force: bool, dryrun: bool, steps: frozenset[int],
           locked: bool) -> Path:
    backend = project.layout.backend_for(backend)
    image, staging = project.image, project.mountpoint
    non_conda = bool(project.cfg.get("non_conda_application"))
    if buildsteps.PACK in steps and image.exists() and not force:
        raise ImageError(f"{image} exists: remove it or run `cnd build --force` to replace it")
    if project.cfg.get("user_env_name"):
        # An upstream build nested the env under envs/<name>; ours installs at the mount point itself.
        # The user's condainer.yml is left as it is (comments, order): the key is ignored in memory.
        console.info(f"ignoring user_env_name: {project.cfg['user_env_name']} of condainer.yml "
                     "(the environment is built at the mount point)")
        project.cfg = {k: v for k, v in project.cfg.items() if k != "user_env_name"}
    if non_conda:
        if locked:
            raise ConfigError("--locked: a non_conda_application project has no lock (its application is packed as it is)")
        # upstream: only the image is made from the application the user put in the staging directory
        steps = steps & {buildsteps.PACK, buildsteps.CLEANUP}
        build_plan = None
    else:
        build_plan = plan(project)
    the_lock = locking.for_build(project, build_plan) if locked and build_plan else None
    if build_plan and buildsteps.CONDA in steps:
        line = locking.installing_line(the_lock) if the_lock else solving_for_line(build_plan)
        if line:
            console.info(line)
    # Pack settings are checked now (a processors value over the cap, say), not after the install.
    options = project.pack_options(progress=not console.is_quiet())
    if dryrun:
        _dry_run(project, build_plan, steps, backend, non_conda)
        return image
    started = time.monotonic()
    times: dict[str, float] = {}
    epoch = locking.epoch(the_lock)
    _prepare_staging(staging, fresh=bool(steps & {buildsteps.BASE, buildsteps.CONDA}) and not non_conda,
                     non_conda=non_conda)
    done = False
    try:
        with locking.reproducible(epoch):
            if build_plan:
                _install_steps(project, build_plan, staging, steps, the_lock, epoch)
            times["environment"] = time.monotonic() - started
            if buildsteps.PACK in steps:
                console.info(f"[5] packing {staging} into {image.name}")
                open_to_project(staging, project.directory)  # readable by whoever can read the project
                reuse = _previous_image(image, backend)
                with locking.reproducible(locking.staged_epoch(staging, epoch)):
                    used = pack(staging, image, options, backend, reuse)
                console.info(f"    packed with the {used} backend")
                times["pack"] = time.monotonic() - started - times["environment"]
            if buildsteps.SCRIPTS in steps and build_plan:
                console.info(f"[6] writing {project.activate_script.name} and {project.deactivate_script.name}")
                write_scripts(project.directory, project.env_prefix,
                              build_plan.env.variables if build_plan.env else {}, staging)
                launchers.update(str(project.directory), str(staging / "bin"), project.cfg["launchers"])
        done = True
    except CondainerError:
        raise
    except OSError as exc:
        raise BuildError(f"build failed: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from exc
    finally:
        if buildsteps.CLEANUP in steps:
            console.info(f"[7] removing the staging directory {staging}")
            cleanup_start = time.monotonic()
            with interrupts_deferred():  # a second Ctrl-C or SIGTERM must not leave half a tree
                _remove_staging(staging)
            times["cleanup"] = time.monotonic() - cleanup_start
        elif os.path.isdir(staging):
            console.info(f"kept the staging directory {staging} (step 7 was not asked for)")
    if done and buildsteps.PACK in steps:
        size = image.stat().st_size
        split = ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
        console.info(f"built {image} ({console.human_bytes(size)}) in {time.monotonic() - started:.1f} s ({split})")
        console.info(f"use it with `cnd exec -- CMD` or `source {project.activate_script}`")
    return image


def _previous_image(image: Path, backend: str) -> Path | None:
    """The image a re-build replaces, as a source of compressed blocks (only read, and replaced by
    a rename: jobs that have it mounted keep reading the old file); None when there is none."""
    if not image.is_file():
        return None
    if backend == "native":
        console.info(f"    not reusing blocks of the previous {image.name}: the native backend cannot")
        return None
    return image


def _install_steps(project: Project, build_plan: BuildPlan, staging: Path, steps: frozenset[int],
                   the_lock: dict | None, epoch: int) -> None:
    """Steps 1 to 4: the environment in the staging directory, and its lock."""
    if buildsteps.CONDA in steps and buildsteps.BASE not in steps and (build_plan.installer or build_plan.env is None):
        raise ConfigError("--steps: step 2 needs step 1 in the same run (it installs into the base environment)")
    if buildsteps.BASE in steps:
        console.info(f"[1] base environment in {staging}")
        _base_step(build_plan, staging)
    if buildsteps.CONDA in steps:
        console.info(f"[2] conda packages with {build_plan.describe()}")
        _conda_step(project, build_plan, staging, the_lock)
    if buildsteps.PIP in steps:
        console.info("[3] pip packages")
        _pip_step(build_plan, staging, the_lock)
    if buildsteps.FINISH in steps:
        console.info(f"[4] recording the environment in {lockfile.LOCK_NAME}")
        locking.finish(project, build_plan, staging, the_lock, epoch)


def _dry_run(project: Project, build_plan: BuildPlan | None, steps: frozenset[int], backend: str,
             non_conda: bool) -> None:
    """Say, step by step, what the build would do; before any image or staging directory exists."""
    actions = Actions(True)
    staging, image = project.mountpoint, project.image
    what = {
        buildsteps.BASE: f"create staging directory {staging} (mode 0700) and its base environment",
        buildsteps.CONDA: f"install the environment into {staging} with "
                          f"{build_plan.describe() if build_plan else 'nothing (non_conda_application)'}",
        buildsteps.PIP: f"install {build_plan.requirements.name if build_plan and build_plan.requirements else 'no requirements.txt'} with pip",
        buildsteps.FINISH: f"write {project.directory / lockfile.LOCK_NAME} and its copy in the image",
        buildsteps.PACK: f"pack {staging} into {image} ({backend} backend"
                         + (", copying the blocks of the image it replaces where they hold the same data)"
                            if image.is_file() and backend != "native" else ")"),
        buildsteps.SCRIPTS: f"write {project.activate_script} and {project.deactivate_script}",
        buildsteps.CLEANUP: f"remove {staging}",
    }
    if non_conda:
        actions.do(f"use the application in {staging} as it is (non_conda_application)", lambda: None)
    for n in sorted(steps):
        actions.do(f"step {n}: {what[n]}", lambda: None)
    if buildsteps.CLEANUP not in steps:
        actions.do(f"keep {staging} (step 7 not asked for)", lambda: None)
