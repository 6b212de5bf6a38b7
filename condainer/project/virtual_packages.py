"""condainer.yml's ``virtual_packages:`` vocabulary: the virtual packages a conda solve may be told
about (__cuda, __glibc, __archspec, ...), their CONDA_OVERRIDE_* variables, what conda makes of an
empty override, and the value each takes. config.py checks the key with it; the build
(build/environments/virtual.py) resolves, detects and applies them.
"""

from __future__ import annotations

import dataclasses
import re

# What an empty override means, per conda: drop the package, use version "0", or ignore it.
REMOVE, ZERO, IGNORE = "remove", "zero", "ignore"

YML_KEY = "virtual_packages"

VERSION_RE = re.compile(r"[0-9A-Za-z_.+!]+")
ARCH_RE = re.compile(r"[0-9A-Za-z_]+")


@dataclasses.dataclass(frozen=True)
class Kind:
    """One overridable virtual package and the rules conda applies to its override."""

    key: str  # the condainer.yml key: the package name without "__"
    platform: str | None  # sys.platform prefix where conda exports it; None: everywhere
    on_empty: str  # REMOVE, ZERO or IGNORE
    in_build: bool = False  # archspec: the value is the build string, the version is always "1"

    @property
    def package(self) -> str:
        return f"__{self.key}"

    @property
    def variable(self) -> str:
        return f"CONDA_OVERRIDE_{self.key.upper()}"

    def problem(self, value: str) -> str | None:
        """Why VALUE cannot be this package's version (or microarchitecture); None if it can."""
        pattern = ARCH_RE if self.in_build else VERSION_RE
        if value == "" or pattern.fullmatch(value):
            return None
        what = "a microarchitecture name such as x86_64_v3 or zen3" if self.in_build else "a version such as 12.4"
        return f"{value!r} is not {what}"


KINDS: dict[str, Kind] = {k.key: k for k in (
    Kind("cuda", None, REMOVE),
    Kind("glibc", "linux", REMOVE),
    Kind("archspec", None, REMOVE, in_build=True),
    Kind("linux", "linux", ZERO),
    Kind("osx", "darwin", REMOVE),
    Kind("win", "win32", IGNORE),
)}
