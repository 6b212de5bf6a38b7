"""The ``cnd`` command line: click commands that parse options, call the library and print
(`cnd exec` with a plain command line skips click: see entry.py).

No logic lives here: each command hands its options to a library function. Expected failures
(CondainerError) print one line and exit non-zero; Ctrl-C prints "interrupted" and exits 130.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import click

from condainer import __version__, console
from condainer.errors import CondainerError, error_line, run_reporting_errors


@dataclasses.dataclass
class Globals:
    """The global flags, handed to every sub-command through click's context."""

    directory: str
    quiet: bool
    dryrun: bool


pass_globals = click.make_pass_decorator(Globals)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-q", "--quiet", is_flag=True,
              help="Be quiet: no progress messages (results such as status are still printed).")
@click.option(
    "-d",
    "--directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Condainer project directory (default: the current working directory).",
)
@click.option("-y", "--dryrun", is_flag=True, help="Dry run: print what would be done, change nothing.")
@click.version_option(__version__, "--version", prog_name="condainer")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, directory: str | None, dryrun: bool) -> None:
    """Create and manage conda and pip environments packed into compressed squashfs images."""
    console.set_quiet(quiet)
    ctx.obj = Globals(directory=os.path.abspath(directory or os.getcwd()), quiet=quiet, dryrun=dryrun)


@cli.command()
def version() -> None:
    """Print version information and exit."""
    # The version is the one thing -q must not hide: it is what was asked for.
    click.echo(f"condainer {__version__}")


def _register_subcommands() -> None:
    """Attach the command groups that live in their own modules (imported late to keep startup fast)."""
    from condainer.cli import image as cli_image
    from condainer.cli import project as cli_project

    cli.add_command(cli_image.image)
    for command in cli_project.COMMANDS:
        cli.add_command(command)


def usage_error_line(exc: click.UsageError) -> str:
    """A usage error as the one line every cnd error is, pointing at the command's --help
    (instead of click's Usage/Try/blank/Error block)."""
    ctx = exc.ctx or click.get_current_context(silent=True)
    where = ctx.command_path if ctx else "cnd"
    message = " ".join(exc.format_message().split()).rstrip(".")
    return error_line(f"{message} (see `{where} --help`)")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``cnd``: run the CLI and turn expected failures into one line and an exit code."""
    _register_subcommands()
    run_reporting_errors(lambda: _run_click(argv))


def _run_click(argv: list[str] | None) -> int:
    """Click's own outcomes as exit codes; its errors as the one line every cnd error is."""
    try:
        cli.main(args=argv, prog_name="cnd", standalone_mode=False)
    except click.exceptions.Abort:
        raise KeyboardInterrupt from None
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # `cnd` or `cnd image` alone: the help is what was asked for
        return exc.exit_code
    except click.UsageError as exc:
        print(usage_error_line(exc), file=sys.stderr)
        return exc.exit_code
    except click.ClickException as exc:
        raise CondainerError(" ".join(exc.format_message().split()), exit_code=exc.exit_code) from None
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0
