"""`cnd exec`'s per-rank path: what it reads instead of condainer.yml, what it imports, and that its
command line means what click would make of it."""

import os
import subprocess
import sys

import pytest

from condainer import entry
from condainer.node.safedir import remove_private_dir
from condainer.project import layout

from .conftest import cnd, mountpoint_of

# Modules the per-rank path must not import: each costs file-system calls on the file system that
# holds cnd, on every rank (README: "What cnd exec costs").
HEAVY = {"click", "yaml", "pathlib", "subprocess", "dataclasses", "json", "re", "signal", "typing",
         "inspect", "shutil", "socket", "contextlib", "condainer.cli.commands",
         "condainer.project.config", "condainer.project.directory", "condainer.backends.mount", "condainer.fs",
         "condainer.node.slurm"}


def imported(project, code: str, *args: str) -> set[str]:
    """The modules `python -c CODE ARGS` imports, from `python -X importtime`."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code, *args], cwd=project,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}


def imported_by_exec(project, *command: str) -> set[str]:
    """The modules `cnd exec -- COMMAND` imports beyond those of a bare start of the same interpreter
    (a .pth file of the test venv may import some at start-up)."""
    code = "import sys; from condainer.entry import main; main(sys.argv[1:])"
    return imported(project, code, "exec", "--", *command) - imported(project, "pass")


@pytest.mark.host_mode
@pytest.mark.parametrize("pip_project", ["python"], indirect=True)
def test_exec_and_mount_on_a_mounted_image_import_no_heavy_module(pip_project):
    cnd("-q", "mount", cwd=pip_project, check=True)
    cnd("exec", "--", "true", cwd=pip_project, check=True)  # leaves the cache of condainer.yml
    modules = imported_by_exec(pip_project, "true")
    assert "condainer.node.runner" in modules, modules  # the probe sees the exec path at all
    assert not modules & HEAVY, sorted(modules & HEAVY)
    # `source ./activate` runs `cnd mount` in every job script: as lean while the image is mounted
    code = "import sys; from condainer.entry import main; main(sys.argv[1:])"
    modules = imported(pip_project, code, "-q", "mount") - imported(pip_project, "pass")
    assert "condainer.node.runner" in modules, modules
    assert not modules & HEAVY, sorted(modules & HEAVY)


@pytest.mark.parametrize("pip_project", ["python"], indirect=True)
def test_an_edit_of_condainer_yml_is_never_ignored(pip_project):
    cnd("exec", "--", "true", cwd=pip_project, check=True)
    assert (pip_project / layout.CACHE_NAME).is_file(), "a full load leaves the cache"
    config = pip_project / "condainer.yml"
    old_base = str(mountpoint_of(pip_project).parent)
    other_base = old_base[:-1] + ("X" if old_base[-1] != "X" else "Y")  # the file keeps its size
    os.makedirs(other_base, exist_ok=True)
    before = os.stat(config)
    text = config.read_text()
    new_text = text.replace(f"mount_base_directory: {old_base}\n", f"mount_base_directory: {other_base}\n")
    assert new_text != text and len(new_text) == len(text)
    config.write_text(new_text)
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime
    try:
        r = cnd("exec", "--", "python", "-c", "import sys; print(sys.prefix)", cwd=pip_project)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == str(mountpoint_of(pip_project))
        assert r.stdout.strip().startswith(other_base + "/")
    finally:
        config.write_text(text)


def test_a_cache_that_cannot_be_written_is_only_missed(tmp_path):
    layout.write_cache(str(tmp_path / "missing"), b"uuid: x\n", {"uuid": "x"})
    assert not (tmp_path / "missing").exists()
    assert layout.cached(str(tmp_path)) is None


def test_a_cache_of_another_text_or_version_is_ignored(tmp_path):
    text = b"uuid: 0b5a2d2e-0000-4000-8000-000000000000\nmount_base_directory: $CND_TEST_BASE/x\n"
    (tmp_path / "condainer.yml").write_bytes(text)
    raw = {"uuid": "0b5a2d2e-0000-4000-8000-000000000000", "mount_base_directory": "$CND_TEST_BASE/x"}
    layout.write_cache(str(tmp_path), text, raw)
    os.environ["CND_TEST_BASE"] = "/scratch"
    try:
        found = layout.cached(str(tmp_path))
        assert found is not None and found.mountpoint == f"/scratch/x/condainer-{raw['uuid']}"
        del os.environ["CND_TEST_BASE"]
        assert layout.cached(str(tmp_path)) is None, "an unset variable is the full load's error to report"
    finally:
        os.environ.pop("CND_TEST_BASE", None)
    os.environ["CND_TEST_BASE"] = "/scratch"
    try:
        assert layout.cached(str(tmp_path)) is not None
        (tmp_path / "condainer.yml").write_bytes(text + b"# edited\n")
        assert layout.cached(str(tmp_path)) is None
        (tmp_path / "condainer.yml").write_bytes(text)
        assert layout.cached(str(tmp_path)) is not None
        cache = tmp_path / layout.CACHE_NAME
        cache.write_bytes(cache.read_bytes().replace(b"cache 1 ", b"cache 1 0.0.0-"))
        assert layout.cached(str(tmp_path)) is None
    finally:
        os.environ.pop("CND_TEST_BASE", None)


@pytest.mark.parametrize("pip_project", ["native"], indirect=True)
def test_exec_passes_inherited_descriptors_to_the_command(pip_project, tmp_path):
    """MPI launchers hand ranks descriptors (PMI_FD); the command gets what cnd was given."""
    (tmp_path / "msg").write_text("through fd 3\n")
    r = subprocess.run(f"{sys.executable} -m condainer exec -- sh -c 'cat <&3' 3<{tmp_path / 'msg'}", shell=True,
                       cwd=pip_project, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "through fd 3\n"


@pytest.mark.parametrize("pip_project", ["native"], indirect=True)
def test_exec_restores_default_sigpipe_for_the_command(pip_project):
    """Python ignores SIGPIPE; `yes | head` inside exec must end, not loop on EPIPE."""
    r = cnd("exec", "--", "sh", "-c", "yes | head -n 2; echo \"${PIPESTATUS:-done}\"", cwd=pip_project,
            timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["y", "y", "done"]
    assert "Broken pipe" not in r.stderr, "SIGPIPE was still ignored in the command"


def click_reading(args: list[str], monkeypatch, capsys) -> tuple | None:
    """What the click command line makes of ARGS: (name, directory, command, backend, dryrun, quiet,
    print_path), or None when it reaches neither `exec_command` nor `mount_project`."""
    from condainer import console
    from condainer.cli import commands as cli
    from condainer.node import runner

    seen = []

    def fake_exec(directory, argv, backend=None, dryrun=False, mount_mode=None):
        seen.append(["exec", os.path.abspath(directory), argv, backend, dryrun, console.is_quiet(), False, mount_mode])
        return 0

    def fake_mount(directory, backend=None, dryrun=False):
        seen.append(["mount", os.path.abspath(directory), [], backend, dryrun, console.is_quiet(), False, None])
        return "/fake/mount/point"

    monkeypatch.setattr(runner, "exec_command", fake_exec)
    monkeypatch.setattr(runner, "mount_project", fake_mount)
    capsys.readouterr()
    try:
        cli.main(args)
    except SystemExit:
        pass
    console.set_quiet(False)
    if seen and "/fake/mount/point" in capsys.readouterr().out:
        seen[0][-2] = True
    return tuple(seen[0]) if seen else None


@pytest.mark.parametrize("args", [
    "exec -- python", "exec python -- x", "exec -- -- x", "exec --backend native -- python -c 1",
    "exec --backend=python true", "exec true --backend native", "-q exec true", "-qy exec true", "-yq exec true",
    "-y exec -- true", "--quiet --dryrun exec true", "-d {dir} exec true", "-d{dir} exec -- true",
    "--directory={dir} exec true", "--directory {dir} -q exec true a 'b c'", "exec --mount-mode host true",
    "exec --mount-mode=namespace -- true", "exec --backend python --mount-mode auto true",
    "mount", "-q -d {dir} mount", "mount -p", "mount --print --backend python", "-y mount --backend=native -p",
    # not plain command lines: click answers them
    "exec", "exec --", "exec -x true", "exec --backend foo true", "exec --mount-mode foo true", "exec --mount-mode",
    "mount --mount-mode host", "exec --help", "-h exec true", "-d {file} exec true",
    "status", "exec --backend", "mount --help", "mount extra", "mount -x", "mount --backend", "-d {file} mount",
])
def test_lean_command_lines_read_as_click_reads_them(args, tmp_path, monkeypatch, capsys):
    (tmp_path / "f").write_text("")
    argv = [a.format(dir=tmp_path, file=tmp_path / "f") for a in args.split()]
    monkeypatch.chdir(tmp_path)
    request = entry.parse(argv)
    expected = click_reading(argv, monkeypatch, capsys)
    if request is None:
        return  # click is asked, so its answer is the answer
    assert expected is not None, f"{args!r} is not an exec or mount for click"
    assert (request.name, request.directory, request.command, request.backend, request.dryrun, request.quiet,
            request.print_path, request.mount_mode) == expected


def test_plain_exec_and_mount_command_lines_skip_click():
    assert entry.parse(["exec", "--", "python", "app.py"]) is not None
    assert entry.parse(["-q", "-d", "/x", "exec", "--backend", "native", "app"]) is not None
    assert entry.parse(["-q", "-d", "/x", "mount"]) is not None
    assert entry.parse(["exec", "--backend", "foo", "app"]) is None


def test_remove_private_dir_removes_only_empty_dirs_of_ours(tmp_path):
    empty, full, link, foreign = (tmp_path / n for n in ("empty", "full", "link", "foreign"))
    empty.mkdir()
    full.mkdir()
    (full / "f").write_text("")
    foreign.mkdir()
    os.chown(foreign, 65534, 65534)  # nobody's
    link.symlink_to(empty)
    for path in (link, full, foreign):
        remove_private_dir(path)
        assert os.path.lexists(path), path
    assert empty.is_dir()
    remove_private_dir(empty)
    assert not empty.exists()
