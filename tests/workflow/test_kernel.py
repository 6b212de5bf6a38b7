"""`cnd kernel install`: a Jupyter client outside the image starts, uses, interrupts, restarts and shuts
down the image's ipykernel through the python launcher; the image is unmounted afterwards."""

from __future__ import annotations

import json
import os
import queue
import time

import pytest

from condainer import mounts

from .conftest import BACKENDS, backend_param, cnd, force_unmount, mountpoint_of, set_config
from .test_project import one_line_error

jupyter_client = pytest.importorskip("jupyter_client")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402


@pytest.fixture(scope="module")
def kernel_project(tmp_path_factory):
    """A pip project with ipykernel (from PyPI), built once for this module."""
    project = tmp_path_factory.mktemp("kernel") / "nb"
    project.mkdir()
    (project / "requirements.txt").write_text("ipykernel\n")
    cnd("init", cwd=project, check=True)
    base = tmp_path_factory.mktemp("kbase")
    set_config(project, mount_base_directory=str(base))
    cnd("build", "--backend", "native", cwd=project, check=True, timeout=900)
    yield project
    force_unmount(mountpoint_of(project))


@pytest.fixture(params=[backend_param(b) for b in BACKENDS])
def project(kernel_project, request):
    set_config(kernel_project, backend=request.param)
    yield kernel_project
    cnd("-q", "umount", cwd=kernel_project)
    force_unmount(mountpoint_of(kernel_project))


def _run(client, code: str, timeout: float = 60) -> tuple[str, list[str], str]:
    """Execute CODE; (what it printed on stdout, the names of errors it raised, its reply status)."""
    msg_id = client.execute(code)
    out, errors = [], []
    while True:
        msg = client.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            out.append(content["text"])
        elif kind == "error":
            errors.append(content["ename"])
        elif kind == "status" and content["execution_state"] == "idle":
            break
    reply = client.get_shell_msg(timeout=timeout)
    return "".join(out), errors, reply["content"]["status"]


def test_kernel_round_trip_and_unmount(project, tmp_path):
    r = cnd("kernel", "install", "--name", "imgkernel", "--display-name", "Image Python", "--prefix", str(tmp_path),
            cwd=project)
    assert r.returncode == 0, r.stderr
    kernels = tmp_path / "share" / "jupyter" / "kernels"
    spec = json.loads((kernels / "imgkernel" / "kernel.json").read_text())
    assert spec["argv"][:3] == [str(project / "bin" / "python"), "-m", "ipykernel_launcher"]
    assert spec["display_name"] == "Image Python"
    assert mounts.find_mount(mountpoint_of(project)) is None, "install must not leave the image mounted"

    ksm = KernelSpecManager(kernel_dirs=[str(kernels)])
    assert "imgkernel" in ksm.find_kernel_specs()
    km = jupyter_client.KernelManager(kernel_name="imgkernel", kernel_spec_manager=ksm)
    km.start_kernel()
    try:
        client = km.client()
        client.start_channels()
        client.wait_for_ready(timeout=120)
        out, errors, _ = _run(client, "import sys; print(sys.prefix)")
        assert (out.strip(), errors) == (str(mountpoint_of(project)), [])

        msg_id = client.execute("import time; time.sleep(60)")
        while True:  # wait until the cell runs, then interrupt it
            msg = client.get_iopub_msg(timeout=60)
            if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "busy"):
                break
        time.sleep(1.0)
        km.interrupt_kernel()
        errors = []
        while True:
            try:
                msg = client.get_iopub_msg(timeout=30)
            except queue.Empty:
                raise AssertionError("the interrupted cell did not end") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "error":
                errors.append(msg["content"]["ename"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        assert errors == ["KeyboardInterrupt"]
        out, errors, _ = _run(client, "print('alive after interrupt')")
        assert out.strip() == "alive after interrupt"

        client.stop_channels()
        km.restart_kernel(now=False)
        client = km.client()
        client.start_channels()
        client.wait_for_ready(timeout=120)
        out, errors, _ = _run(client, "import sys; print('restarted', 'time' in dir())")
        assert out.strip() == "restarted False", "a restart is a fresh interpreter"
        client.stop_channels()
    finally:
        km.shutdown_kernel(now=False)
    deadline = time.monotonic() + 10
    while mounts.find_mount(mountpoint_of(project)) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mounts.find_mount(mountpoint_of(project)) is None, "the last user (the kernel) must unmount"

    r = cnd("kernel", "remove", "--name", "imgkernel", "--prefix", str(tmp_path), cwd=project)
    assert r.returncode == 0, r.stderr
    assert not (kernels / "imgkernel").exists()
    msg = one_line_error(cnd("kernel", "remove", "--name", "imgkernel", "--prefix", str(tmp_path), cwd=project))
    assert "no kernel imgkernel" in msg


def test_no_ipykernel_is_one_line_saying_how_to_add_it(pip_projects, tmp_path):
    project = pip_projects("native")
    msg = one_line_error(cnd("kernel", "install", "--prefix", str(tmp_path), cwd=project))
    assert "has no ipykernel: add `ipykernel` to requirements.txt" in msg
    assert not (tmp_path / "share").exists()
    assert mounts.find_mount(mountpoint_of(project)) is None
    msg = one_line_error(cnd("kernel", "install", "--user", "--prefix", str(tmp_path), cwd=project))
    assert "--user and --prefix exclude each other" in msg


def test_default_name_and_user_directory(kernel_project, tmp_path):
    env = {**os.environ, "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    r = cnd("kernel", "install", cwd=kernel_project, env=env)
    assert r.returncode == 0, r.stderr
    spec_file = tmp_path / "data" / "kernels" / "condainer-nb" / "kernel.json"
    assert json.loads(spec_file.read_text())["display_name"] == "Python (nb, condainer)"
    assert cnd("kernel", "remove", "--user", cwd=kernel_project, env=env).returncode == 0
    assert not spec_file.parent.exists()
    assert mounts.find_mount(mountpoint_of(kernel_project)) is None
