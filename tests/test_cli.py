"""The command line's contract: version, help, and one-line errors with non-zero exits."""


import pytest

from condainer import __version__
from tests.helpers.cnd import cnd


def test_version_prints_package_version():
    result = cnd("version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"condainer {__version__}"


def test_help_lists_subcommands():
    result = cnd("--help")
    assert result.returncode == 0
    assert "version" in result.stdout
    assert "image" in result.stdout


def test_unknown_command_fails_without_traceback():
    result = cnd("no-such-command")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "where", "says"), [
    (["-d", "{file}", "status"], "cnd", "is a file"),
    (["image", "pack", "{file}", "out.sqfs"], "cnd image pack", "is a file"),
    (["image", "pack", "{dir}", "o.sqfs", "--level", "23"], "cnd image pack", "zstd level must be 1..22"),
    (["image", "pack", "{dir}", "o.sqfs", "--block-size", "3K"], "cnd image pack", "power of two"),
    (["image", "pack", "{dir}", "o.sqfs", "--processors", "0"], "cnd image pack", "at least 1"),
    (["image", "pack", "{dir}", "o.sqfs", "--compression", "lzo"], "cnd image pack", "'lzo' is not one of"),
    (["exec"], "cnd exec", "Missing argument"),
    (["--no-such-flag"], "cnd", "No such option"),
])
def test_usage_errors_are_one_line(tmp_path, args, where, says):
    (tmp_path / "f").write_text("")
    argv = [a.format(file=tmp_path / "f", dir=tmp_path) for a in args]
    result = cnd(*argv, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("cnd: error: ") and says in line
    assert line.endswith(f"(see `{where} --help`)")
    assert not list(tmp_path.glob("*.sqfs"))


def test_help_without_a_subcommand_is_still_help():
    assert "Commands:" in cnd("image").stdout + cnd("image").stderr
