"""The project workflow commands: init, build, exec, mount, umount, status, prereq, cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from condainer import console
from condainer.build.steps import HELP as STEPS_HELP
from condainer.errors import CondainerError
from condainer.project.layout import BACKENDS, MOUNT_MODES

backend_or_config = click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default=None,
    help="native tools, the Python implementation, or auto (default: the `backend` of condainer.yml).",
)


def _globals():
    """The global flags (-q, -d, -y) parsed by the `cnd` group."""
    return click.get_current_context().obj


@click.command()
@click.option("--pip", "pip_only", is_flag=True, help="Write an example requirements.txt instead of environment.yml.")
@click.option("-n", "--non-conda-application", "non_conda", is_flag=True,
              help="No environment: create the staging directory (printed) for an application you put "
                   "there yourself; `cnd build` packs it as it is (non_conda_application: true).")
def init(pip_only: bool, non_conda: bool) -> None:
    """Initialize the project directory with condainer.yml (and an example environment file)."""
    from condainer.build.workflow import init as do_init

    g = _globals()
    do_init(Path(g.directory), pip_only=pip_only, non_conda=non_conda, dryrun=g.dryrun)


@click.command()
@backend_or_config
@click.option("--force", is_flag=True, help="Replace an existing image.")
@click.option("--locked", is_flag=True,
              help="Install exactly condainer.lock, with no solve; refused when the environment files "
                   "changed since it was written (`cnd lock` updates it).")
@click.option("-s", "--steps", default=None, metavar="1,2,...", help=STEPS_HELP)
def build(backend: str | None, force: bool, locked: bool, steps: str | None) -> None:
    """Build the environment and pack it into <uuid>.squashfs; write condainer.lock."""
    from condainer.build import steps as buildsteps
    from condainer.build.workflow import build as do_build

    g = _globals()
    do_build(Path(g.directory), backend=backend, force=force, dryrun=g.dryrun, steps=buildsteps.parse(steps),
             locked=locked)


@click.command("lock")
def lock_cmd() -> None:
    """Solve and install into the staging directory, write condainer.lock; no image is made."""
    from condainer.build.workflow import lock as do_lock

    g = _globals()
    path = do_lock(Path(g.directory), dryrun=g.dryrun)
    if not g.dryrun:
        console.info(f"wrote {path}; `cnd build --locked` installs exactly it")


@click.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@backend_or_config
@click.option("--mount-mode", type=click.Choice(MOUNT_MODES), default=None,
              help="namespace: a private mount in a user namespace; host: the node's mount table; auto: a "
                   "namespace where the kernel allows it (default: the `mount_mode` of condainer.yml).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def exec_cmd(backend: str | None, mount_mode: str | None, command: tuple[str, ...]) -> None:
    """Run COMMAND inside the environment (mounting and unmounting as needed): cnd exec -- CMD ARGS."""
    from condainer.node.runner import exec_command

    g = _globals()
    argv = list(command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    sys.exit(exec_command(Path(g.directory), argv, backend=backend, dryrun=g.dryrun, mount_mode=mount_mode))


@click.command()
@backend_or_config
@click.option("-p", "--print", "print_path", is_flag=True, help="Print the mount point (for scripts).")
def mount(backend: str | None, print_path: bool) -> None:
    """Mount the image at its mount point (it stays mounted until `cnd umount`)."""
    from condainer.node.runner import mount_project

    g = _globals()
    path = mount_project(Path(g.directory), backend=backend, dryrun=g.dryrun)
    if print_path:
        click.echo(str(path))


@click.command()
def umount() -> None:
    """Unmount the image (refused while it is busy; a stale mount is cleaned)."""
    from condainer.node.runner import umount_project

    g = _globals()
    umount_project(Path(g.directory), dryrun=g.dryrun)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(as_json: bool) -> None:
    """Print the project's image, mount point and mount state."""
    from condainer.cli.report import format_status
    from condainer.cli.report import status as do_status

    g = _globals()
    data = do_status(Path(g.directory))
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        console.out(format_status(data))


@click.command()
def prereq() -> None:
    """Show which tools `auto` picks for packing and mounting, and why."""
    from condainer.cli.report import prereq as do_prereq

    g = _globals()
    lines, ok = do_prereq(Path(g.directory))
    for line in lines:
        console.out(line)
    if not ok:
        raise CondainerError("FUSE is not usable here: images cannot be mounted")


@click.command()
def cache() -> None:
    """Read the image into the page cache of the OS (before a large job)."""
    from condainer.cli.report import cache as do_cache

    g = _globals()
    if g.dryrun:
        print(f"dryrun: read the image of {g.directory} into the page cache")
        return
    do_cache(Path(g.directory))


@click.command("launchers")
@backend_or_config
def launchers_cmd(backend: str | None) -> None:
    """Write the launchers in bin/ again (after moving the project or changing `launchers:`)."""
    from condainer.node.launchers import rewrite

    g = _globals()
    if g.dryrun:
        print(f"dryrun: write the launchers of {g.directory}/bin for the executables of the image")
        return
    if not rewrite(g.directory, backend=backend):
        console.info("no launchers written (`launchers:` of condainer.yml)")


def _kernel_dir(user: bool, prefix: str | None) -> str | None:
    if user and prefix:
        raise click.UsageError("--user and --prefix exclude each other")
    return prefix


kernel_name = click.option("--name", default=None, help="Kernel name (default: condainer-<project directory name>).")
kernel_where = [
    click.option("--user", is_flag=True, help="Into the user's Jupyter data directory (the default)."),
    click.option("--prefix", default=None, metavar="DIR", help="Into DIR/share/jupyter/kernels."),
]


@click.group()
def kernel() -> None:
    """Jupyter kernels that run in the image (through bin/python)."""


@kernel.command("install")
@kernel_name
@click.option("--display-name", default=None, help="The name Jupyter shows.")
@kernel_where[0]
@kernel_where[1]
def kernel_install(name: str | None, display_name: str | None, user: bool, prefix: str | None) -> None:
    """Write a kernelspec whose kernel is the image's ipykernel."""
    from condainer.node.kernel import install

    g = _globals()
    prefix = _kernel_dir(user, prefix)
    if g.dryrun:
        print(f"dryrun: write a kernelspec for {g.directory}")
        return
    console.info(f"installed kernel {install(g.directory, name=name, display_name=display_name, prefix=prefix)}")


@kernel.command("remove")
@kernel_name
@kernel_where[0]
@kernel_where[1]
def kernel_remove(name: str | None, user: bool, prefix: str | None) -> None:
    """Remove a kernelspec written by `cnd kernel install`."""
    from condainer.node.kernel import remove

    g = _globals()
    prefix = _kernel_dir(user, prefix)
    if g.dryrun:
        print(f"dryrun: remove the kernelspec of {g.directory}")
        return
    console.info(f"removed kernel {remove(g.directory, name=name, prefix=prefix)}")


COMMANDS: list[click.Command] = [init, build, lock_cmd, exec_cmd, mount, umount, status, prereq, cache,
                                 launchers_cmd, kernel]
