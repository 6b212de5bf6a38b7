"""Building on a login node for the compute nodes: virtual packages (__cuda, __glibc, __archspec)
set by CONDA_OVERRIDE_* and by condainer.yml's virtual_packages, for every builder.

Real builds use a local channel with needs-cuda (__cuda >=12: this machine has no GPU) and
needs-glibc (__glibc >=99: no machine has it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from condainer.build.environments import virtual
from condainer.build.environments.virtual import VirtualPackage as VP
from condainer.project import config

from .conda_channel import build_virtual_channel
from .conftest import cnd, mountpoint_of, set_config
from .test_conda_frontends import FAKE, _calls, _env, fake_bin  # noqa: F401  (fake_bin is a fixture)
from .test_project import one_line_error

UUID = "11111111-2222-3333-4444-555555555555"
HERE = [VP("__unix", "0"), VP("__linux", "6.1"), VP("__glibc", "2.36"), VP("__archspec", "1", "zen3")]
RATTLER_CUDA_ERROR = (
    "Cannot solve the request because of: needs-cuda * cannot be installed because there are no viable options:\n"
    "└─ needs-cuda 1.0 would require\n   └─ __cuda >=12, for which no candidates were found.\n")


def no_overrides() -> dict[str, str]:
    """The caller's environment without any CONDA_OVERRIDE_* (the test must not inherit one)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CONDA_OVERRIDE_")}


@pytest.fixture(scope="module")
def channel(tmp_path_factory) -> Path:
    return build_virtual_channel(tmp_path_factory.mktemp("vchannel") / "chan")


@pytest.fixture
def project(tmp_path, mount_base, channel):
    """An unbuilt project of the embedded builder; call it with the packages to install."""
    def make(*packages: str, **cfg) -> Path:
        deps = "".join(f"  - {p}\n" for p in packages)
        (tmp_path / "environment.yml").write_text(f"channels:\n  - {channel.as_uri()}\ndependencies:\n{deps}")
        cnd("init", cwd=tmp_path, check=True)
        set_config(tmp_path, mount_base_directory=str(mount_base), **cfg)
        return tmp_path
    return make


def solving_for(stderr: str) -> str:
    [line] = [line for line in stderr.splitlines() if line.startswith("solving for: ")]
    return line


@pytest.fixture(scope="module")
def no_gpu_here():
    if any(p.name == "__cuda" for p in virtual.detect()):
        pytest.skip("this machine has a GPU: __cuda is detected")


# --- the rules, on given detected lists (there is no GPU here to detect __cuda from) ---

def test_a_variable_adds_or_replaces_and_an_empty_one_removes():
    detected = [*HERE, VP("__cuda", "12.2")]
    env = {"CONDA_OVERRIDE_CUDA": "12.4", "CONDA_OVERRIDE_ARCHSPEC": "x86_64_v3"}
    got = virtual.apply(detected, virtual.requested({}, env), platform="linux")
    assert virtual.describe(got) == ("__unix, __linux=6.1, __glibc=2.36, __archspec=1=x86_64_v3 (CONDA_OVERRIDE_ARCHSPEC), "
                                     "__cuda=12.4 (CONDA_OVERRIDE_CUDA)")
    got = virtual.apply(detected, virtual.requested({}, {"CONDA_OVERRIDE_CUDA": "", "CONDA_OVERRIDE_GLIBC": " "}),
                        platform="linux")
    assert [p.name for p in got] == ["__unix", "__linux", "__archspec"]
    got = virtual.apply(HERE, virtual.requested({}, {"CONDA_OVERRIDE_CUDA": "11.8"}), platform="linux")
    assert got == [*HERE, VP("__cuda", "11.8", "0", "CONDA_OVERRIDE_CUDA")]


def test_conda_quirks_linux_empty_is_zero_and_platform_packages_stay_on_their_platform():
    got = virtual.apply(HERE, virtual.requested({}, {"CONDA_OVERRIDE_LINUX": "", "CONDA_OVERRIDE_OSX": "13"}),
                        platform="linux")
    assert got[1] == VP("__linux", "0", "0", "CONDA_OVERRIDE_LINUX") and len(got) == len(HERE)
    assert virtual.apply([VP("__osx", "14.1")], virtual.requested({"glibc": "2.28"}, {}), platform="darwin") == [
        VP("__osx", "14.1")]


def test_the_yml_key_wins_over_the_variable():
    wanted = virtual.requested({"cuda": "12.4", "glibc": ""}, {"CONDA_OVERRIDE_CUDA": "11.0",
                                                               "CONDA_OVERRIDE_GLIBC": "2.40"})
    got = virtual.apply(HERE, wanted, platform="linux")
    assert [p.label() for p in got] == ["__unix", "__linux=6.1", "__archspec=1=zen3", "__cuda=12.4 (condainer.yml)"]
    assert virtual.records(got)[-1] == {"name": "__cuda", "version": "12.4", "build": "0", "source": "condainer.yml"}


def test_a_bad_variable_is_a_one_line_error():
    with pytest.raises(Exception, match=r"^CONDA_OVERRIDE_CUDA: '12\.4 beta' is not a version"):
        virtual.requested({}, {"CONDA_OVERRIDE_CUDA": "12.4 beta"})


@pytest.mark.parametrize("error", [
    RATTLER_CUDA_ERROR,
    " ".join(RATTLER_CUDA_ERROR.split()),  # as the child flattens it
    "Cannot solve the request because of: No candidates were found for __cuda >=12.\n",
    "error    libmamba Could not solve for environment specs\n    └─ nothing provides __cuda >=12 needed by needs-cuda-1.0-0",
])
def test_a_missing_virtual_package_is_named_with_both_ways_to_set_it(error):
    msg = virtual.explain_unsatisfied(error, HERE)
    assert msg.startswith("__cuda >=12 is needed") and "this build has no __cuda" in msg
    assert 'CONDA_OVERRIDE_CUDA=<version>' in msg and 'virtual_packages: {cuda: "<version>"}' in msg
    assert "\n" not in msg


def test_a_too_old_virtual_package_says_what_was_solved_for():
    msg = virtual.explain_unsatisfied(RATTLER_CUDA_ERROR, [*HERE, VP("__cuda", "11.8", "0", "condainer.yml")])
    assert msg.startswith("__cuda >=12 is needed (by needs-cuda 1.0) but the solve was for __cuda=11.8 (condainer.yml)")
    assert virtual.explain_unsatisfied("No candidates were found for nope *.", HERE) is None
    assert virtual.explain_unsatisfied("__unix >=9, for which no candidates were found", HERE) is None


# --- condainer.yml: validated at load, numbers as written ---

def _write(tmp_path: Path, mount_base: Path, extra: str) -> None:
    (tmp_path / "condainer.yml").write_text(f"mount_base_directory: {mount_base}\nuuid: {UUID}\n{extra}\n")
    (tmp_path / "requirements.txt").write_text("six\n")


def test_unquoted_versions_are_read_as_written(tmp_path, mount_base):
    _write(tmp_path, mount_base, "virtual_packages:\n  cuda: 12.10\n  glibc: 2.28\n  linux: 5\n  archspec: x86_64_v3")
    assert config.load(tmp_path)["virtual_packages"] == {"cuda": "12.10", "glibc": "2.28", "linux": "5",
                                                         "archspec": "x86_64_v3"}
    _write(tmp_path, mount_base, 'virtual_packages: {cuda: "12.4", glibc: ""}')
    assert config.load(tmp_path)["virtual_packages"] == {"cuda": "12.4", "glibc": ""}
    _write(tmp_path, mount_base, "")
    assert config.load(tmp_path)["virtual_packages"] == {}


@pytest.mark.parametrize(("extra", "says"), [
    ("virtual_packages: [cuda]", "virtual_packages: must be a mapping of cuda, glibc, archspec"),
    ("virtual_packages: {gpu: '1'}", "virtual_packages: gpu: unknown virtual package; known: cuda, glibc"),
    ("virtual_packages: {cuda: yes}", 'virtual_packages: cuda: must be a quoted string such as "12.4"'),
    ("virtual_packages: {cuda: }", 'virtual_packages: cuda: must be a quoted string'),
    ("virtual_packages: {cuda: '12 4'}", "virtual_packages: cuda: '12 4' is not a version such as 12.4"),
    ("virtual_packages: {archspec: zen-3}", "virtual_packages: archspec: 'zen-3' is not a microarchitecture name"),
])
def test_bad_virtual_packages_are_one_line_errors(tmp_path, mount_base, extra, says):
    _write(tmp_path, mount_base, extra)
    msg = one_line_error(cnd("-y", "build", cwd=tmp_path))
    assert msg.startswith(f"cnd: error: {tmp_path / 'condainer.yml'}: ") and says in msg


# --- real builds with the embedded builder ---

def test_needs_cuda_fails_in_one_line_without_an_override(project, no_gpu_here):
    proj = project("needs-cuda")
    r = cnd("build", cwd=proj, env=no_overrides())
    msg = one_line_error(r)
    assert [line for line in r.stderr.splitlines() if line.startswith("cnd: error:")] == [msg]
    assert "__cuda >=12 is needed (by needs-cuda 1.0) but this build has no __cuda" in msg
    assert "CONDA_OVERRIDE_CUDA=" in msg and "virtual_packages: {cuda:" in msg
    assert "__cuda" not in solving_for(r.stderr)
    assert not mountpoint_of(proj).exists() and not list(proj.glob("*.squashfs"))


def test_needs_cuda_builds_with_the_variable(project):
    proj = project("needs-cuda")
    r = cnd("build", "--backend", "native", cwd=proj, env={**no_overrides(), "CONDA_OVERRIDE_CUDA": "12.4"})
    assert r.returncode == 0, r.stderr
    assert solving_for(r.stderr).endswith(", __cuda=12.4 (CONDA_OVERRIDE_CUDA)")
    assert "installed 1 conda packages" in r.stderr
    assert (proj / f"{config.load(proj)['uuid']}.squashfs").is_file()


def test_needs_cuda_builds_with_the_yml_key_which_wins_over_the_variable(project):
    proj = project("needs-cuda")
    (proj / "condainer.yml").write_text((proj / "condainer.yml").read_text() + "virtual_packages:\n  cuda: 12.4\n")
    r = cnd("build", "--backend", "native", cwd=proj, env=no_overrides())
    assert r.returncode == 0, r.stderr
    assert solving_for(r.stderr).endswith(", __cuda=12.4 (condainer.yml)")
    # the variable asks for too old a CUDA: the key wins, the build still succeeds
    r = cnd("build", "--force", "--backend", "native", cwd=proj, env={**no_overrides(), "CONDA_OVERRIDE_CUDA": "11.0"})
    assert r.returncode == 0, r.stderr
    assert "__cuda=12.4 (condainer.yml)" in solving_for(r.stderr) and "11.0" not in r.stderr


def test_too_old_cuda_from_the_yml_key_fails_naming_it(project):
    proj = project("needs-cuda", virtual_packages={"cuda": "11.8"})
    msg = one_line_error(cnd("build", cwd=proj, env={**no_overrides(), "CONDA_OVERRIDE_CUDA": "12.4"}))
    assert "but the solve was for __cuda=11.8 (condainer.yml)" in msg


def test_needs_glibc_99_fails_naming_glibc(project):
    r = cnd("build", cwd=project("needs-glibc"), env=no_overrides())
    msg = one_line_error(r)
    assert "__glibc >=99 is needed (by needs-glibc 1.0) but the solve was for __glibc=" in msg
    assert "CONDA_OVERRIDE_GLIBC=<version>" in msg and 'virtual_packages: {glibc: "<version>"}' in msg


def test_the_solving_for_line_is_silenced_by_q(project):
    proj = project("needs-cuda", virtual_packages={"cuda": "12.4"})
    assert "solving for: " in cnd("-y", "build", cwd=proj, env=no_overrides()).stderr
    r = cnd("-q", "-y", "build", cwd=proj, env=no_overrides())
    assert r.returncode == 0 and "solving for" not in r.stderr, r.stderr


# --- conda frontends get the key as CONDA_OVERRIDE_* ---

def test_frontends_get_the_yml_key_as_conda_override_variables(tmp_path, mount_base, fake_bin):  # noqa: F811
    (tmp_path / "environment.yml").write_text("channels:\n  - conda-forge\ndependencies:\n  - alpha\n")
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base), conda_exe="mamba",
               virtual_packages={"cuda": "12.4", "archspec": "x86_64_v3", "glibc": ""})
    log = tmp_path / "calls.jsonl"
    env = {k: v for k, v in _env(fake_bin, log).items() if not k.startswith("CONDA_OVERRIDE_")}
    env.update(CONDA_OVERRIDE_CUDA="11.0", CONDA_OVERRIDE_OSX="13")
    r = cnd("build", "--backend", "native", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    [call] = _calls(log)
    assert call["overrides"] == {"CONDA_OVERRIDE_CUDA": "12.4", "CONDA_OVERRIDE_ARCHSPEC": "x86_64_v3",
                                 "CONDA_OVERRIDE_GLIBC": "", "CONDA_OVERRIDE_OSX": "13"}
    assert "mamba detects its own, with CONDA_OVERRIDE_CUDA=12.4" in solving_for(r.stderr)


def test_the_installer_and_its_mamba_get_them_too(tmp_path, mount_base, fake_bin):  # noqa: F811
    installer = tmp_path / "Miniforge3-Linux-x86_64.sh"
    installer.write_text(
        "#!/bin/bash\n"
        'while getopts "bfp:" o; do case $o in p) P=$OPTARG;; esac; done\n'
        'mkdir -p "$P/bin" "$P/conda-meta" && touch "$P/conda-meta/history"\n'
        f'cp {FAKE} "$P/bin/mamba" && chmod 755 "$P/bin/mamba"\n'
        'echo "{\\"tool\\": \\"installer\\", \\"overrides\\": {\\"CONDA_OVERRIDE_CUDA\\": \\"$CONDA_OVERRIDE_CUDA\\"}}"'
        ' >> "$FAKE_CONDA_LOG"\n')
    (tmp_path / "environment.yml").write_text("dependencies:\n  - alpha\n")
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base), virtual_packages={"cuda": "12.4"})
    log = tmp_path / "calls.jsonl"
    r = cnd("build", "--backend", "native", cwd=tmp_path, env=_env(fake_bin, log, CONDAINER_INSTALLER=str(installer)))
    assert r.returncode == 0, r.stderr
    assert [(c["tool"], c["overrides"]["CONDA_OVERRIDE_CUDA"]) for c in _calls(log)] == [
        ("installer", "12.4"), ("mamba", "12.4")]


# --- cnd prereq ---

def test_prereq_lists_detected_and_asked_for_virtual_packages(tmp_path, mount_base):
    r = cnd("prereq", cwd=tmp_path, env=no_overrides())
    assert r.returncode in (0, 1), r.stderr
    [here] = [line for line in r.stdout.splitlines() if line.startswith("virtual packages here: ")]
    assert "__unix" in here
    assert "virtual packages to solve for" not in r.stdout
    r = cnd("prereq", cwd=tmp_path, env={**no_overrides(), "CONDA_OVERRIDE_GLIBC": "2.28"})
    assert "virtual packages to solve for: " in r.stdout and "__glibc=2.28 (CONDA_OVERRIDE_GLIBC)" in r.stdout
    _write(tmp_path, mount_base, "virtual_packages: {cuda: '12.4'}")
    r = cnd("prereq", cwd=tmp_path, env=no_overrides())
    [asked] = [line for line in r.stdout.splitlines() if line.startswith("virtual packages to solve for: ")]
    assert asked.endswith("__cuda=12.4 (condainer.yml)")


# --- the lock records what the solve was asked; a change makes it stale ---

def test_a_changed_override_makes_the_lock_stale_for_status_and_locked_builds(project):
    proj = project("needs-cuda")
    asked = {**no_overrides(), "CONDA_OVERRIDE_CUDA": "12.4"}
    assert cnd("-q", "lock", cwd=proj, env=asked).returncode == 0
    lock = json.loads((proj / "condainer.lock").read_text())
    assert lock["virtual_overrides"] == {"cuda": "12.4"}
    assert {"name": "__cuda", "version": "12.4", "build": "0", "source": "CONDA_OVERRIDE_CUDA"} in lock["virtual_packages"]
    assert "stale" not in cnd("status", cwd=proj, env=asked, check=True).stdout

    tail = "run `cnd lock` to update it (or build without --locked)"
    changed = {**no_overrides(), "CONDA_OVERRIDE_CUDA": "12.6"}
    why = f"virtual packages changed since condainer.lock was written: __cuda 12.4 -> 12.6 (CONDA_OVERRIDE_CUDA): {tail}"
    assert f"condainer.lock is stale: {why}" in cnd("status", cwd=proj, env=changed, check=True).stdout
    assert json.loads(cnd("status", "--json", cwd=proj, env=changed, check=True).stdout)["lock"]["stale"] == why
    assert one_line_error(cnd("build", "--locked", cwd=proj, env=changed)) == f"cnd: error: {why}"
    assert not list(proj.glob("*.squashfs")) and not mountpoint_of(proj).exists()
    msg = one_line_error(cnd("build", "--locked", cwd=proj, env=no_overrides()))
    assert "__cuda 12.4 -> as detected: run `cnd lock`" in msg

    # the same value from condainer.yml asks the same of the solve: not stale
    set_config(proj, virtual_packages={"cuda": "12.4"})
    assert "stale" not in cnd("status", cwd=proj, env=no_overrides(), check=True).stdout
    r = cnd("-q", "build", "--locked", "--backend", "native", cwd=proj, env=no_overrides())
    assert r.returncode == 0, r.stderr
    set_config(proj, virtual_packages={"cuda": "12.4", "archspec": ""})
    msg = one_line_error(cnd("build", "--locked", "--force", cwd=proj, env=no_overrides()))
    assert "virtual packages changed since condainer.lock was written: __archspec as detected -> removed " \
           "(condainer.yml): run `cnd lock`" in msg


def test_a_pip_only_lock_does_not_depend_on_virtual_packages(tmp_path, mount_base):
    (tmp_path / "requirements.txt").write_text("six\n")
    cnd("init", cwd=tmp_path, check=True)
    set_config(tmp_path, mount_base_directory=str(mount_base))
    assert cnd("-q", "lock", cwd=tmp_path, env=no_overrides()).returncode == 0
    assert json.loads((tmp_path / "condainer.lock").read_text())["virtual_overrides"] == {}
    changed = {**no_overrides(), "CONDA_OVERRIDE_CUDA": "12.6"}
    assert "stale" not in cnd("status", cwd=tmp_path, env=changed, check=True).stdout
