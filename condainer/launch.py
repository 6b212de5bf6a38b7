"""What a launcher in ``<project>/bin/`` runs when it cannot join a private mount by itself:
`cnd exec -- NAME ARGS...`, without the command line.

A launcher (written by launchers.py) is started by tools that take an interpreter path and cannot
`source ./activate`: Jupyter, an IDE, a workflow engine, a batch script, every rank of `srun`. When no
holder of the image runs on the node yet (or in host mode) its shell starts ``python -IS`` (no site,
no user paths) with the condainer that wrote it first on sys.path, which calls :func:`main`; from
there it is `cnd exec`'s path (runner.exec_command), with its one-line errors and exit codes.
Standard library only (os, sys): this module is on that path.
"""


import os
import sys


def _moved(project_dir: str, name: str, launcher: str) -> bool:
    """True when LAUNCHER is not PROJECT_DIR/bin/NAME any more: the project directory was moved or
    copied, and the absolute paths written into the launcher point at the old place."""
    try:
        mine = os.stat(launcher)
        recorded = os.stat(os.path.join(project_dir, "bin", name))
    except OSError:
        return True
    return (mine.st_dev, mine.st_ino) != (recorded.st_dev, recorded.st_ino)


def main(project_dir: str, name: str) -> None:
    """Run NAME of PROJECT_DIR's environment with our arguments, as `cnd exec -- NAME ARGS...`
    would (mount if needed, reference count, signals forwarded, unmount by the last user), and exit
    with its exit code."""
    from condainer.errors import CondainerError, run_reporting_errors

    launcher = sys.argv[0]

    def run() -> int:
        if _moved(project_dir, name, launcher):
            raise CondainerError(f"{launcher} was written for the project {project_dir}, which has moved or "
                                 "is gone (or the launcher was copied: link to it instead): run `cnd launchers` "
                                 "in the project directory to rewrite its launchers")
        from condainer.node import runner

        return runner.exec_command(project_dir, [name, *sys.argv[1:]])

    run_reporting_errors(run)
