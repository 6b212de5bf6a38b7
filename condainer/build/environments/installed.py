"""What an environment holds, read back after the installers ran: the input of condainer.lock.

Conda packages come from ``conda-meta/*.json``, which every installer (py-rattler, conda, mamba,
micromamba) writes with the package's URL and checksums, so one reader serves every builder. Pip
packages come from the ``--report`` files that our pip steps leave in the staging directory: pip
knows there which archive it installed and its sha256, which the installed files no longer tell.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from condainer.build.environments import pipsources
from condainer.errors import BuildError

REPORT_DIR = ".condainer"  # beside the lock, inside the prefix; reports are removed once read
REPORT_GLOB = "pip-report-*.json"


def report_path(prefix: Path) -> Path:
    """A fresh pip --report file for PREFIX (one per pip step, in order)."""
    d = prefix / REPORT_DIR
    d.mkdir(mode=0o755, exist_ok=True)
    return d / f"pip-report-{len(list(d.glob(REPORT_GLOB))) + 1}.json"


def conda_packages(prefix: Path) -> list[dict[str, str]]:
    """The conda packages of PREFIX as lock entries (name, version, build, channel, subdir, url,
    sha256); a field the installer did not record is empty (see lockfile.unpinned)."""
    meta = prefix / "conda-meta"
    entries = []
    for path in sorted(meta.glob("*.json")) if meta.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BuildError(f"cannot read {path}: {exc}") from None
        entries.append({k: str(record.get(k) or "") for k in ("name", "version", "build", "channel", "subdir",
                                                             "url", "sha256")})
    return sorted(entries, key=lambda e: (e["name"], e["version"], e["build"]))


def pip_packages(prefix: Path, *, consume: bool = True) -> list[dict[str, Any]]:
    """The pip packages installed by our pip steps, from their reports; CONSUME removes the reports
    (they hold paths and times that would differ between two builds)."""
    found: dict[str, dict[str, Any]] = {}
    reports = sorted((prefix / REPORT_DIR).glob(REPORT_GLOB), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    for path in reports:
        for item in _report_items(path):
            found[item["name"]] = item  # a later step's install of a name replaces the earlier one
        if consume:
            path.unlink()
    if consume and (prefix / REPORT_DIR).is_dir() and not any((prefix / REPORT_DIR).iterdir()):
        (prefix / REPORT_DIR).rmdir()
    return [found[name] for name in sorted(found)]


def _report_items(path: Path) -> list[dict[str, Any]]:
    try:
        report: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BuildError(f"cannot read pip's report {path.name}: {exc}") from None
    return [pipsources.entry(item) for item in report.get("install") or []]
