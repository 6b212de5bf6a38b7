"""Every supported CPython runs the whole workflow: the full suite runs on one of them, this module on
each of the others that the machine has (a missing one is a skip that names it).

For each, condainer is installed by `pip install <this checkout>` into a fresh venv of that Python
(no PYTHONPATH: the installed package is what runs), then: `init`, a pip-only `build` (its venv is of
that Python) and two `build --locked` giving the same image, `exec`, a launcher, `kernel install` with
a Jupyter client talking to the kernel, a conda `build`, `lock` and `build --locked` from the local
test channel (py-rattler under that Python), and `image pack` / `mount` with both backends.
On 3.10, whose marshal writes a frozenset constant in string-hash order, two --locked builds of
ipykernel give the same image only because the build fixes PYTHONHASHSEED (3.11 sorts them).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.mounts import unmount

from .conftest import mountpoint_of, set_config
from .pythons import SUPPORTED, find

REPO = Path(__file__).resolve().parents[2]
RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"
OTHERS = [v for v in SUPPORTED if v != RUNNING]


def _environ() -> dict[str, str]:
    """The environment of a user's shell: nothing points into this checkout."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SOURCE_DATE_EPOCH")}


@pytest.fixture(scope="module", params=OTHERS)
def cnd_of(request, tmp_path_factory):
    """`cnd` installed by pip into a venv of the parameter's CPython; a function running it."""
    version = request.param
    python = find(version)
    if python is None:
        pytest.skip(f"CPython {version} not found on this machine (pyenv versions, python{version} on PATH)")
    venv = tmp_path_factory.mktemp(f"cnd-{version}") / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, env=_environ())
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(REPO)],
                       capture_output=True, text=True, env=_environ(), timeout=600)
    assert r.returncode == 0, f"pip install of condainer on {version} failed: {r.stderr[-2000:]}"

    def run(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        r = subprocess.run([str(venv / "bin" / "cnd"), *args], cwd=cwd, capture_output=True, text=True,
                           env=_environ(), timeout=timeout)
        assert r.returncode == 0, f"cnd {' '.join(args)} on {version} failed ({r.returncode}): {r.stderr[-2000:]}"
        return r

    run.version = version  # type: ignore[attr-defined]
    run.python = str(venv / "bin" / "python")  # type: ignore[attr-defined]
    return run


def _image_digest(project: Path) -> str:
    [image] = project.glob("*.squashfs")
    return hashlib.sha256(image.read_bytes()).hexdigest()


def test_pip_project_workflow(cnd_of, tmp_path, mount_base):
    version = cnd_of.version
    project = tmp_path / "pip"
    project.mkdir()
    (project / "requirements.txt").write_text("six\nipykernel\n")
    cnd_of("init", cwd=project)
    set_config(project, mount_base_directory=str(mount_base))
    try:
        # The Python writer throughout: a re-build re-packs against the previous image, and blocks
        # copied from an image mksquashfs wrote are its bytes, not those of a fresh pack.
        cnd_of("-q", "build", "--backend", "python", cwd=project)
        lock = json.loads((project / "condainer.lock").read_text())
        assert lock["host_python"]["version"].startswith(version + ".")
        assert {"six", "ipykernel"} <= {p["name"] for p in lock["pip"]}
        digests = []
        for _ in range(2):
            cnd_of("-q", "build", "--locked", "--force", "--backend", "python", cwd=project)
            digests.append(_image_digest(project))
        assert digests[0] == digests[1], "two --locked builds give the same image"

        exe = cnd_of("exec", "--", "python", "-c", "import six, sys; print('%d.%d' % sys.version_info[:2])",
                     cwd=project)
        assert exe.stdout.strip() == version, "the venv image is of the Python that runs cnd"
        launched = subprocess.run([str(project / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
                                  capture_output=True, text=True, env=_environ(), timeout=120)
        assert (launched.returncode, launched.stdout.strip()) == (0, str(mountpoint_of(project))), launched.stderr

        _kernel_round_trip(cnd_of, project, tmp_path / "jupyter", version)
    finally:
        subprocess.run([cnd_of.python, "-m", "condainer", "-q", "umount"], cwd=project, env=_environ())
        unmount(str(mountpoint_of(project)))


def _kernel_round_trip(cnd_of, project: Path, prefix: Path, version: str) -> None:
    """`cnd kernel install`, then a Jupyter client of the test's Python runs a cell in the kernel."""
    jupyter_client = pytest.importorskip("jupyter_client")
    from jupyter_client.kernelspec import KernelSpecManager

    cnd_of("kernel", "install", "--name", "img", "--prefix", str(prefix), cwd=project)
    ksm = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
    km = jupyter_client.KernelManager(kernel_name="img", kernel_spec_manager=ksm)
    km.start_kernel(env=_environ())
    try:
        client = km.client()
        client.start_channels()
        client.wait_for_ready(timeout=120)
        msg_id = client.execute("import sys; print('%d.%d' % sys.version_info[:2])")
        out = []
        while True:
            msg = client.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        assert "".join(out).strip() == version
        client.stop_channels()
    finally:
        km.shutdown_kernel(now=False)


def test_conda_project_from_the_local_channel(cnd_of, tmp_path, mount_base, conda_channel):
    project = tmp_path / "conda"
    project.mkdir()
    (project / "environment.yml").write_text(
        f"name: demo\nchannels:\n  - {conda_channel.as_uri()}\ndependencies:\n  - hello\n")
    cnd_of("init", cwd=project)
    set_config(project, mount_base_directory=str(mount_base))
    try:
        cnd_of("-q", "build", "--backend", "python", cwd=project)
        cnd_of("-q", "lock", cwd=project)
        cnd_of("-q", "build", "--locked", "--force", cwd=project)
        out = cnd_of("exec", "--", "hello", cwd=project).stdout
        assert out.strip() == f"hello from {mountpoint_of(project)}/bin/hello"
    finally:
        subprocess.run([cnd_of.python, "-m", "condainer", "-q", "umount"], cwd=project, env=_environ())
        unmount(str(mountpoint_of(project)))


@pytest.mark.parametrize("backend", ["python", "native"])
def test_image_pack_and_mount(cnd_of, tmp_path, backend):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "data.txt").write_text("payload\n" * 1000)
    image, mp = tmp_path / "t.squashfs", tmp_path / "mp"
    mp.mkdir()
    cnd_of("-q", "image", "pack", str(src), str(image), "--backend", backend)
    cnd_of("image", "check", str(image))
    cnd_of("-q", "image", "mount", str(image), str(mp), "--backend", backend)
    try:
        assert (mp / "sub" / "data.txt").read_text() == "payload\n" * 1000
    finally:
        cnd_of("-q", "image", "umount", str(mp))
    assert not os.path.ismount(mp)
