"""Building on a login node for the compute nodes: virtual packages (__cuda, __glibc, __archspec)
set by CONDA_OVERRIDE_* and by condainer.yml's virtual_packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from condainer import config
from condainer.environments import virtual
from condainer.environments.virtual import VirtualPackage as VP

from .conftest import cnd
from .test_project import one_line_error

UUID = "11111111-2222-3333-4444-555555555555"
HERE = [VP("__unix", "0"), VP("__linux", "6.1"), VP("__glibc", "2.36"), VP("__archspec", "1", "zen3")]
RATTLER_CUDA_ERROR = (
    "Cannot solve the request because of: needs-cuda * cannot be installed because there are no viable options:\n"
    "└─ needs-cuda 1.0 would require\n   └─ __cuda >=12, for which no candidates were found.\n")


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
