"""`cnd exec` with real mounts: output, exit codes, sharing one mount, and recovery after kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from condainer import mounts

from .conftest import BACKENDS, backend_param, cnd, kill_as_slurm_does, mountpoint_of

pytestmark = pytest.mark.parametrize("pip_project", [backend_param(b) for b in BACKENDS], indirect=True)


def backend_of(project) -> str:
    return project.name.split("-", 1)[1]


def mount_log_lines(project) -> list[str]:
    """The lines cnd logged for the mounts of PROJECT (in the user's log directory)."""
    import yaml

    from condainer.project.layout import log_dir

    uuid = yaml.safe_load((project / "condainer.yml").read_text())["uuid"]
    try:
        with open(os.path.join(log_dir(), "mounts.log")) as fh:
            return [line for line in fh.read().splitlines() if f" uuid={uuid} " in line]
    except FileNotFoundError:
        return []


def test_exec_runs_in_env_and_unmounts(pip_project):
    backend = backend_of(pip_project)
    r = cnd("exec", "--backend", backend, "--", "python", "-c", "import six, sys; print(six.__name__, sys.prefix)",
            cwd=pip_project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["six", str(mountpoint_of(pip_project))]
    assert mounts.find_mount(mountpoint_of(pip_project)) is None


def test_exec_returns_child_exit_code(pip_project):
    r = cnd("exec", "--backend", backend_of(pip_project), "--", "python", "-c", "import sys; sys.exit(7)",
            cwd=pip_project)
    assert r.returncode == 7
    assert mounts.find_mount(mountpoint_of(pip_project)) is None


def test_exec_unknown_command_is_one_line_127(pip_project):
    r = cnd("exec", "--backend", backend_of(pip_project), "--", "no-such-program-xyz", cwd=pip_project)
    assert r.returncode == 127
    assert r.stderr.strip().splitlines() == ["cnd: error: command not found: no-such-program-xyz"]
    assert mounts.find_mount(mountpoint_of(pip_project)) is None


def test_exec_keeps_callers_working_directory(pip_project, tmp_path):
    r = cnd("-d", str(pip_project), "exec", "--backend", backend_of(pip_project), "--", "pwd", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path)


@pytest.mark.host_mode
def test_concurrent_execs_share_one_mount(pip_project):
    before = len(mount_log_lines(pip_project))
    code = "import six, time; time.sleep(1.0); print('ok')"

    def one(_):
        return cnd("exec", "--backend", backend_of(pip_project), "--", "python", "-c", code, cwd=pip_project)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]
    assert all(r.stdout.strip() == "ok" for r in results)
    assert len(mount_log_lines(pip_project)) - before == 1, "the 8 execs must share one mount"
    assert mounts.find_mount(mountpoint_of(pip_project)) is None


def test_sigterm_is_forwarded_to_the_command(pip_project):
    script = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\nprint('ready', flush=True)\ntime.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-m", "condainer", "exec", "--backend", backend_of(pip_project), "--",
                             "python", "-c", script], cwd=pip_project, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        where = _where_it_waits(proc.pid)
        proc.kill()
        raise AssertionError(f"cnd exec did not end after SIGTERM; it and its children wait in:\n{where}") from None
    assert code == 42
    assert mounts.find_mount(mountpoint_of(pip_project)) is None


def _where_it_waits(pid: int) -> str:
    """The state, kernel wait channel and command of PID and its children (to diagnose a hang)."""
    out = subprocess.run(["ps", "-o", "pid,ppid,stat,wchan:32,args", "--pid", str(pid), "--ppid", str(pid)],
                         capture_output=True, text=True)
    return out.stdout


@pytest.mark.host_mode
def test_killed_exec_and_daemon_do_not_break_the_next_exec(pip_project):
    mp = mountpoint_of(pip_project)
    proc = subprocess.Popen([sys.executable, "-m", "condainer", "exec", "--backend", backend_of(pip_project), "--",
                             "python", "-c", "import time; print('up', flush=True); time.sleep(60)"],
                            cwd=pip_project, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "up"
    kill_as_slurm_does(proc, mp)
    assert mounts.find_mount(mp) is not None, "the killed step must leave a mount behind for this test"
    r = cnd("exec", "--backend", backend_of(pip_project), "--", "python", "-c", "import six; print('again')",
            cwd=pip_project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "again"
    assert mounts.find_mount(mp) is None, "stale entries of the killed exec must not keep the mount alive"


def _watchers_of(project) -> list[str]:
    out = subprocess.run(["pgrep", "-f", f"condainer.node.reaper {project} "], capture_output=True, text=True)
    return out.stdout.split()


def _assert_no_watcher_left(project) -> None:
    deadline = time.monotonic() + 10
    while _watchers_of(project) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _watchers_of(project) == [], "a step watcher outlived its step"


def _slurm_task(step: dict, local_id: str) -> dict:
    return {**os.environ, **step, "SLURM_LOCALID": local_id}


def _exec_as_task(project, step: dict, local_id: str) -> None:
    """`cnd exec -- true` as task LOCAL_ID of the Slurm step STEP (environment only, no Slurm)."""
    r = cnd("exec", "--backend", backend_of(project), "--", "true", cwd=project, env=_slurm_task(step, local_id))
    assert r.returncode == 0, r.stderr


@pytest.mark.host_mode
def test_mount_stays_until_the_last_task_of_a_slurm_step_is_done(pip_project):
    mp = mountpoint_of(pip_project)
    step = {"SLURM_JOB_ID": "999", "SLURM_STEP_ID": "0", "SLURM_STEP_TASKS_PER_NODE": "2"}
    # Task 1 of the step is alive but has not started its exec yet.
    task1 = subprocess.Popen(["sleep", "60"], env=_slurm_task(step, "1"))
    try:
        _exec_as_task(pip_project, step, "0")
        assert mounts.state(mp) == "mounted", "task 1 of the step has not run yet: keep the mount"
        _exec_as_task(pip_project, step, "1")
        assert mounts.find_mount(mp) is None, "the step's last local task unmounts"
    finally:
        task1.kill()
        task1.wait()
    _assert_no_watcher_left(pip_project)


@pytest.mark.host_mode
def test_step_over_without_every_task_running_exec_unmounts(pip_project):
    mp = mountpoint_of(pip_project)
    step = {"SLURM_JOB_ID": "998", "SLURM_STEP_ID": "3", "SLURM_STEP_TASKS_PER_NODE": "2"}
    other_task = subprocess.Popen(["sleep", "60"], env=_slurm_task(step, "1"))
    try:
        _exec_as_task(pip_project, step, "0")
        assert mounts.state(mp) == "mounted"
    finally:
        other_task.kill()
        other_task.wait()
    # The other task never ran cnd; once it is gone the step is over here and the watcher unmounts.
    deadline = time.monotonic() + 10
    while mounts.find_mount(mp) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mounts.find_mount(mp) is None
    _assert_no_watcher_left(pip_project)
