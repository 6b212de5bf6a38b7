"""Virtual packages (__cuda, __glibc, __archspec, ...): what a conda solve assumes the target has.

Images are built on login nodes, which often have no GPU and may have another CPU or glibc than
the compute nodes that run them. conda lets CONDA_OVERRIDE_* say what the target has; the
``virtual_packages:`` key of condainer.yml says it once per project and wins over both the
variables and detection. The names and variables are project/virtual_packages.py's; this module is
the one place that knows their order of precedence: the embedded builder, the conda frontends,
`cnd build` and `cnd prereq` all ask it.

Detection runs py-rattler in a child process (``python -m condainer.build.environments.virtual``), as
conda runs its CUDA probe in one: initialising a GPU driver can hang or crash a process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence

from condainer.errors import BuildError, ConfigError
from condainer.project.virtual_packages import IGNORE, KINDS, REMOVE, YML_KEY, Kind

SOURCE_YML = "condainer.yml"
DETECTED = "detected"


@dataclasses.dataclass(frozen=True)
class VirtualPackage:
    """A virtual package as solved for; SOURCE says who set it (a lock file can record all four)."""

    name: str
    version: str
    build: str = "0"
    source: str = DETECTED

    def label(self) -> str:
        """``__cuda=12.4 (condainer.yml)``: conda's name=version=build with the zeros left out."""
        text = self.name
        if self.version != "0" or self.build != "0":
            text += f"={self.version}"
        if self.build != "0":
            text += f"={self.build}"
        return text if self.source == DETECTED else f"{text} ({self.source})"


Override = tuple[str, str]  # (value, source)


def _make(kind: Kind, value: str, source: str) -> VirtualPackage:
    """The package VALUE stands for: the version, or archspec's microarchitecture (its build)."""
    if kind.in_build:
        return VirtualPackage(kind.package, "1", value, source)
    return VirtualPackage(kind.package, value, "0", source)


def requested(configured: Mapping[str, str] | None, environ: Mapping[str, str] | None = None) -> dict[str, Override]:
    """The overrides asked for, by key: the CONDA_OVERRIDE_* variables, then condainer.yml's
    virtual_packages (already validated by config.py) over them. A bad variable is a ConfigError."""
    environ = os.environ if environ is None else environ
    wanted: dict[str, Override] = {}
    for kind in KINDS.values():
        if kind.variable in environ:
            value = environ[kind.variable].strip()
            problem = kind.problem(value)
            if problem:
                raise ConfigError(f"{kind.variable}: {problem}")
            wanted[kind.key] = (value, kind.variable)
    for key, value in (configured or {}).items():
        wanted[key] = (value, SOURCE_YML)
    return wanted


def apply(detected: Sequence[VirtualPackage], overrides: Mapping[str, Override],
          platform: str = sys.platform) -> list[VirtualPackage]:
    """DETECTED with OVERRIDES applied as conda applies CONDA_OVERRIDE_*: a value replaces or adds
    the package; an empty one removes it (but __linux becomes 0 and __win keeps what was detected)."""
    result = list(detected)
    for key, (value, source) in overrides.items():
        kind = KINDS[key]
        if kind.platform and not platform.startswith(kind.platform):
            continue  # conda exports __glibc and __linux only on linux, __osx on macOS, __win on Windows
        if not value:
            if kind.on_empty == IGNORE:
                continue
            if kind.on_empty == REMOVE:
                result = [p for p in result if p.name != kind.package]
                continue
            value = "0"
        result = _put(result, _make(kind, value, source))
    return result


def _put(packages: list[VirtualPackage], new: VirtualPackage) -> list[VirtualPackage]:
    """PACKAGES with NEW in place of the package of that name, or added at the end."""
    if any(p.name == new.name for p in packages):
        return [new if p.name == new.name else p for p in packages]
    return [*packages, new]


class Detection:
    """This machine's virtual packages, detected by py-rattler in a child process that starts at
    once; result() waits for it. `cnd prereq` starts it first and does its other checks meanwhile."""

    TIMEOUT = 60.0  # conda gives its CUDA probe as long

    def __init__(self) -> None:
        # The child must see no CONDA_OVERRIDE_*: it reports what is here, overrides come after.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONDA_OVERRIDE_")}
        self._proc = subprocess.Popen([sys.executable, "-m", __name__], env=env, text=True,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def result(self) -> list[VirtualPackage]:
        """The detected packages; a BuildError if detection failed or took too long."""
        try:
            out, err = self._proc.communicate(timeout=self.TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            raise BuildError(f"detecting virtual packages took over {self.TIMEOUT:.0f} s") from None
        if self._proc.returncode != 0:
            lines = err.strip().splitlines() or [f"exit code {self._proc.returncode}"]
            raise BuildError(f"detecting virtual packages failed: {lines[-1]}")
        return [VirtualPackage(**item) for item in json.loads(out)]


def detect() -> list[VirtualPackage]:
    """This machine's virtual packages, before any override."""
    return Detection().result()


def resolve(configured: Mapping[str, str] | None, environ: Mapping[str, str] | None = None,
            detected: Sequence[VirtualPackage] | None = None) -> list[VirtualPackage]:
    """The virtual packages a build solves for: detected here (unless DETECTED is given), then the
    CONDA_OVERRIDE_* variables of ENVIRON, then CONFIGURED (condainer.yml's virtual_packages)."""
    wanted = requested(configured, environ)  # a bad variable fails before the detection runs
    return apply(detect() if detected is None else detected, wanted)


def records(packages: Sequence[VirtualPackage]) -> list[dict[str, str]]:
    """PACKAGES as plain data (name, version, build, source), for JSON and a lock file."""
    return [dataclasses.asdict(p) for p in packages]


def asked(overrides: Mapping[str, Override]) -> dict[str, str]:
    """What OVERRIDES ask of the solve, by key (``{"cuda": "12.4"}``; "" removes): what a lock records,
    so that a later change is seen without detecting anything. Where a value came from does not
    change the solve and is left out."""
    return {key: value for key, (value, _source) in sorted(overrides.items())}


def asked_of(packages: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The overrides read back from the virtual packages a lock recorded (a lock of condainer before
    ``virtual_overrides`` was written): the packages some override set. An override that removed a
    package left nothing to read."""
    found = {}
    for p in packages:
        key = str(p.get("name", ""))[2:]
        if key in KINDS and p.get("source", DETECTED) != DETECTED:
            found[key] = str(p.get("build") if KINDS[key].in_build else p.get("version"))
    return found


def changes(locked: Mapping[str, str], overrides: Mapping[str, Override]) -> list[str]:
    """How OVERRIDES (asked now) differ from LOCKED (asked when the lock was solved), one phrase per
    package: ``__cuda 12.4 -> 12.6 (CONDA_OVERRIDE_CUDA)``; empty when they ask the same."""
    def shown(value: str | None) -> str:
        return "as detected" if value is None else "removed" if value == "" else value

    out = []
    for key in sorted(set(locked) | set(overrides)):
        before, (now, source) = locked.get(key), overrides.get(key, (None, ""))
        if before != now:
            out.append(f"{KINDS[key].package} {shown(before)} -> {shown(now)}" + (f" ({source})" if source else ""))
    return out


def describe(packages: Sequence[VirtualPackage]) -> str:
    """``__unix, __linux=6.1, __cuda=12.4 (condainer.yml)``: one line for humans."""
    return ", ".join(p.label() for p in packages) or "none"


def frontend_environ(configured: Mapping[str, str] | None) -> dict[str, str]:
    """condainer.yml's virtual_packages as the CONDA_OVERRIDE_* variables that mamba, conda,
    micromamba and a Miniforge installer read; they replace the caller's variables of those names."""
    return {KINDS[key].variable: value for key, value in (configured or {}).items()}


def to_rattler(packages: Sequence[VirtualPackage]) -> list:
    """PACKAGES as py-rattler GenericVirtualPackages, for solve(); imports rattler (the child's job)."""
    from rattler import GenericVirtualPackage, PackageName, Version
    from rattler.package.build_string import BuildString

    return [GenericVirtualPackage(PackageName(p.name), Version(p.version), BuildString(p.build)) for p in packages]


# How solvers say that nothing provides a virtual package: resolvo (py-rattler) without and with a
# spec ("└─ __cuda >=12, for which no candidates were found", "No candidates were found for __cuda
# >=12."), and libsolv (mamba, micromamba: "nothing provides __cuda >=12 needed by ...").
_UNSATISFIED = (
    re.compile(r"(__[a-z][a-z0-9_]*)([^,\n]*), for which no candidates were found", re.IGNORECASE),
    re.compile(r"no candidates were found for (__[a-z][a-z0-9_]*)([^\n]*?)\.?\s*$", re.IGNORECASE | re.MULTILINE),
    re.compile(r"nothing provides (?:requested )?(__[a-z][a-z0-9_]*)((?: [^ \n]+)?)", re.IGNORECASE),
)
_REQUIRER = re.compile(r"([\w.-]+ [\w.+!-]+) would require")


def explain_unsatisfied(error: str, packages: Sequence[VirtualPackage]) -> str | None:
    """A one-line reason for a solve ERROR caused by a missing or too old virtual package that
    we know how to set, naming it and both ways to set it; None for any other error."""
    for pattern in _UNSATISFIED:
        match = pattern.search(error)
        if match and match.group(1).lower()[2:] in KINDS:
            break
    else:
        return None
    kind = KINDS[match.group(1).lower()[2:]]
    needed = f"{kind.package} {match.group(2).strip()}".strip()
    requirers = _REQUIRER.findall(error[: match.start()])
    by = f" (by {requirers[-1]})" if requirers else ""
    have = next((p for p in packages if p.name == kind.package), None)
    solved = f"the solve was for {have.label()}" if have else f"this build has no {kind.package}"
    value = "<microarchitecture>" if kind.in_build else "<version>"
    return (f"{needed} is needed{by} but {solved}: say what the compute nodes have with "
            f"{kind.variable}={value} or, in condainer.yml, {YML_KEY}: {{{kind.key}: \"{value}\"}}")


def main() -> None:
    """The detection child: print this machine's virtual packages as JSON, then leave with os._exit
    (py-rattler's runtime threads must not meet the interpreter's shutdown)."""
    code = 0
    try:
        from rattler import VirtualPackage as Detected

        found = []
        for item in Detected.detect():
            generic = item.into_generic()
            found.append(VirtualPackage(generic.name.normalized, str(generic.version), str(generic.build_string)))
        print(json.dumps(records(found)), flush=True)
    except Exception as exc:  # the parent reports the last line
        print(f"{type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        code = 1
    from condainer.build.environments.run import leave

    leave(code)


if __name__ == "__main__":
    main()
