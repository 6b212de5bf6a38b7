"""The command line's contract: version, help, and one-line errors with non-zero exits."""

import subprocess
import sys

from condainer import __version__


def run_cnd(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "condainer", *args], capture_output=True, text=True, **kwargs
    )


def test_version_prints_package_version():
    result = run_cnd("version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"condainer {__version__}"


def test_help_lists_subcommands():
    result = run_cnd("--help")
    assert result.returncode == 0
    assert "version" in result.stdout
    assert "image" in result.stdout


def test_unknown_command_fails_without_traceback():
    result = run_cnd("no-such-command")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
