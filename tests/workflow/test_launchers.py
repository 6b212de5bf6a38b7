"""Launchers in <project>/bin: `<project>/bin/python ARGS` is `cnd exec -- python ARGS`, with real mounts."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from condainer import mounts

from .conftest import BACKENDS, backend_param, cnd, exec_mode, kill_as_slurm_does, mountpoint_of, set_config
from .test_exec import backend_of, mount_log_lines
from .test_project import one_line_error

pytestmark = pytest.mark.parametrize("pip_project", [backend_param(b) for b in BACKENDS], indirect=True)


@pytest.fixture
def project(pip_project):
    """The built project, with its condainer.yml's backend set to the test's (what a launcher mounts
    with); restored afterwards, as the project is shared by the session."""
    set_config(pip_project, backend=backend_of(pip_project))
    yield pip_project
    set_config(pip_project, backend="auto")


def launch(path, *args: str, cwd=None, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(path), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)


def assert_unmounted(project) -> None:
    assert mounts.find_mount(mountpoint_of(project)) is None, "the last user must unmount"


def test_build_wrote_plain_launchers_of_the_env(project):
    bin_dir = project / "bin"
    names = sorted(os.listdir(bin_dir))
    assert {"python", "python3", "pip"} <= set(names), names
    st = os.stat(bin_dir / "python")
    assert st.st_uid == os.getuid() and st.st_mode & 0o777 == 0o755
    text = (bin_dir / "python").read_text()
    assert text.startswith("#!/bin/sh\n")
    assert subprocess.run(["sh", "-n", str(bin_dir / "python")]).returncode == 0, "valid POSIX sh"
    assert f"python='{sys.executable}'" in text, "the condainer that wrote it starts when nothing is mounted"
    assert str(project) in text and "condainer.launch" in text


def test_launcher_from_another_directory_runs_the_envs_python(project, tmp_path):
    r = launch(project / "bin" / "python", "-c", "import os, six, sys; print(sys.executable, sys.prefix, os.getcwd())",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    mp = mountpoint_of(project)
    assert r.stdout.split() == [str(mp / "bin" / "python"), str(mp), str(tmp_path)]
    assert_unmounted(project)


def test_launcher_through_a_symlink_and_on_path(project, tmp_path):
    link = tmp_path / "mypython"
    link.symlink_to(project / "bin" / "python")
    r = launch(link, "-c", "import six; print('linked')", cwd=tmp_path)
    assert (r.returncode, r.stdout.strip()) == (0, "linked"), r.stderr
    env = dict(os.environ, PATH=f"{project / 'bin'}{os.pathsep}{os.environ['PATH']}")
    r = subprocess.run(["python", "-c", "import six, sys; print(sys.prefix)"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout.strip()) == (0, str(mountpoint_of(project))), r.stderr
    assert_unmounted(project)


def test_exit_codes_and_stdin_pass_through(project):
    python = project / "bin" / "python"
    assert launch(python, "-c", "import sys; sys.exit(7)").returncode == 7
    killed = launch(python, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)").returncode
    # In a private namespace the launcher *becomes* the program, so its status is the program's own
    # (killed by SIGKILL); on the host, cnd waits and reports it as a shell does. Shells see 137 both ways.
    assert killed == (-signal.SIGKILL if exec_mode() == "namespace" else 137)
    shell = subprocess.run(["sh", "-c", f"'{python}' -c 'import os; os.kill(os.getpid(), 9)'; echo $?"],
                           capture_output=True, text=True, timeout=120)
    assert shell.stdout.strip() == "137"
    r = launch(python, "-c", "import sys; data = sys.stdin.read(); print(len(data)); sys.stderr.write('E')",
               input="x" * 100000)
    assert (r.returncode, r.stdout, r.stderr) == (0, "100000\n", "E")
    assert_unmounted(project)


def test_arguments_pass_unchanged(project):
    args = ["a b", "it's", 'say "hi"', "two\nlines", "", "  ", "$HOME", "*", "-c", "\\"]
    r = launch(project / "bin" / "python", "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *args)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == args


def test_sigterm_to_the_launcher_reaches_the_program(project):
    script = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
              "print('ready', flush=True)\ntime.sleep(60)")
    proc = subprocess.Popen([str(project / "bin" / "python"), "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 42
    finally:
        proc.kill()
        proc.wait()
    assert_unmounted(project)


def test_16_concurrent_launchers_share_one_mount(project):
    before = len(mount_log_lines(project))

    def one(_):
        return launch(project / "bin" / "python", "-c", "import six, time; time.sleep(1.0); print('ok')")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    assert [r.returncode for r in results] == [0] * 16, [r.stderr for r in results]
    assert all(r.stdout.strip() == "ok" for r in results)
    assert len(mount_log_lines(project)) - before == 1, "the 16 launchers must share one mount"
    assert_unmounted(project)


@pytest.mark.host_mode
def test_killed_launcher_and_daemon_do_not_break_the_next_one(project):
    mp = mountpoint_of(project)
    proc = subprocess.Popen([str(project / "bin" / "python"), "-c", "import time; print('up', flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "up"
    kill_as_slurm_does(proc, mp)
    assert mounts.find_mount(mp) is not None, "the kill must leave a mount behind for this test"
    r = launch(project / "bin" / "python", "-c", "import six; print('again')")
    assert (r.returncode, r.stdout.strip()) == (0, "again"), r.stderr
    assert_unmounted(project)


def _read_until(fd: int, wanted: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"timed out waiting for {wanted!r}; terminal showed {seen[-500:]!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the terminal's other side closed
            chunk = b""
        if not chunk:
            raise AssertionError(f"terminal closed before {wanted!r}; it showed {seen[-500:]!r}")
        seen += chunk
    return seen


def test_ctrl_c_in_an_interactive_repl_reaches_only_the_repl(project):
    python = str(project / "bin" / "python")
    pid, fd = pty.fork()  # the child leads a new session whose controlling terminal is the pty
    if pid == 0:
        try:
            os.execv(python, [python, "-q"])
        finally:
            os._exit(127)
    try:
        _read_until(fd, b">>> ")
        os.write(fd, b"import time; time.sleep(30)\n")
        time.sleep(1.0)
        os.write(fd, b"\x03")  # Ctrl-C: the terminal sends SIGINT to its foreground process group
        # Python 3.13's REPL redraws the prompt while echoing what was typed: wait for the
        # interrupt itself, then for the prompt after it
        shown = _read_until(fd, b"KeyboardInterrupt", timeout=15)
        if b">>> " not in shown[shown.index(b"KeyboardInterrupt"):]:
            _read_until(fd, b">>> ", timeout=15)
        os.write(fd, b"print('still' + 'here')\n")
        _read_until(fd, b"stillhere")
        os.write(fd, b"exit()\n")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            try:
                if select.select([fd], [], [], 0.1)[0]:
                    os.read(fd, 4096)
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("the launcher did not exit after exit()")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    assert_unmounted(project)


def test_moved_project_is_one_line_and_cnd_launchers_repairs_it(project, tmp_path):
    copy = tmp_path / "moved"
    shutil.copytree(project, copy, symlinks=True)
    msg = one_line_error(launch(copy / "bin" / "python", "-c", "print('no')"))
    assert "has moved or is gone" in msg and "run `cnd launchers`" in msg and str(project) in msg
    r = cnd("launchers", cwd=copy)
    assert r.returncode == 0, r.stderr
    assert str(copy) in (copy / "bin" / "python").read_text()
    r = launch(copy / "bin" / "python", "-c", "import six; print('repaired')")
    assert (r.returncode, r.stdout.strip()) == (0, "repaired"), r.stderr
    assert_unmounted(project)


def test_launchers_key_chooses_the_names_and_keeps_foreign_files(project, tmp_path):
    copy = tmp_path / "p"
    shutil.copytree(project, copy, symlinks=True)
    (copy / "bin" / "mine").write_text("#!/bin/sh\necho mine\n")
    (copy / "bin" / "pip").unlink()
    (copy / "bin" / "pip").write_text("my own pip\n")
    set_config(copy, launchers=["python", "pip", "no-such-tool"])
    r = cnd("launchers", cwd=copy)
    assert r.returncode == 0, r.stderr
    assert "launchers: no-such-tool is not an executable of the environment" in r.stderr
    assert "bin/pip is not a condainer launcher; left as it is" in r.stderr
    assert sorted(os.listdir(copy / "bin")) == ["mine", "pip", "python"]
    assert (copy / "bin" / "pip").read_text() == "my own pip\n"
    set_config(copy, launchers="none")
    assert cnd("launchers", cwd=copy).returncode == 0
    assert sorted(os.listdir(copy / "bin")) == ["mine", "pip"]
    assert_unmounted(project)


def test_python_path_the_kernel_cannot_take_goes_through_sh(project, tmp_path, monkeypatch):
    from condainer.node import launchers

    # The interpreter's whole installation (a venv: its site-packages come with it) under a name with
    # a space and a quote, which an interpreter line cannot hold.
    link = tmp_path / "my t'ools"
    link.symlink_to(sys.prefix)
    spaced = link / os.path.relpath(sys.executable, sys.prefix)
    copy = tmp_path / "p"
    shutil.copytree(project, copy, symlinks=True)
    monkeypatch.setattr(sys, "executable", str(spaced))
    launchers.write(str(copy), ["python"])
    assert (copy / "bin" / "python").read_text().startswith("#!/bin/sh\n")
    r = launch(copy / "bin" / "python", "-c", "import sys; print(sys.argv[1:])", "a b", "")
    assert (r.returncode, r.stdout.strip()) == (0, "['a b', '']"), r.stderr
    assert_unmounted(project)
