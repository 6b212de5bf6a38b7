"""Local sources of pip packages for the tests, in every form requirements.txt can name: git
repositories (reached as git+file://), wheels and sdists by path, directories, and a PEP 503
index of plain files (reached as file://)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import tarfile
import zipfile
from pathlib import Path

PYPROJECT = """[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "{version}"
"""


def project(where: Path, name: str, version: str = "1.0", value: str = "one") -> Path:
    """A setuptools project at WHERE whose module NAME has V = VALUE."""
    (where / name).mkdir(parents=True, exist_ok=True)
    (where / "pyproject.toml").write_text(PYPROJECT.format(name=name, version=version))
    (where / name / "__init__.py").write_text(f"V = {value!r}\n")
    return where


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@example.org", "-c", "user.name=t",
                           *args], check=True, capture_output=True, text=True).stdout.strip()


def git_project(where: Path, name: str) -> str:
    """A git repository of project NAME: one commit (tag v1, branch stable) whose V is "one"; returns
    its commit id. `advance` adds a commit to a branch."""
    project(where, name)
    git(where, "init", "-q", "-b", "main")
    git(where, "add", "-A")
    git(where, "commit", "-q", "-m", "one")
    git(where, "tag", "v1")
    git(where, "branch", "stable")
    return git(where, "rev-parse", "HEAD")


def advance(repo: Path, name: str, branch: str, value: str) -> None:
    """A new commit on BRANCH whose V is VALUE."""
    git(repo, "checkout", "-q", branch)
    (repo / name / "__init__.py").write_text(f"V = {value!r}\n")
    git(repo, "commit", "-q", "-am", value)
    git(repo, "checkout", "-q", "main")


def wheel(out: Path, name: str, version: str, value: str = "one") -> Path:
    """A pure-Python wheel NAME-VERSION in OUT, written by hand (no build backend needed)."""
    out.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"V = {value!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{path},sha256={_b64(content)},{len(content.encode())}" for path, content in files.items()]
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    path = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for rel, content in files.items():
            zf.writestr(zipfile.ZipInfo(rel, (2020, 1, 1, 0, 0, 0)), content)
    return path


def _b64(content: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(content.encode()).digest()).rstrip(b"=").decode()


def sdist(out: Path, name: str, version: str) -> Path:
    """An sdist NAME-VERSION.tar.gz of a setuptools project in OUT."""
    src = project(out / f"{name}-{version}", name, version)
    path = out / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(src, arcname=src.name)
    return path


def simple_index(root: Path, wheels: list[Path]) -> Path:
    """A PEP 503 index at ROOT/simple serving WHEELS (their names as projects); returns ROOT/simple."""
    simple = root / "simple"
    by_name: dict[str, list[Path]] = {}
    for w in wheels:
        by_name.setdefault(w.name.split("-")[0].replace("_", "-"), []).append(w)
    for name, files in by_name.items():
        (simple / name).mkdir(parents=True, exist_ok=True)
        links = "".join(f'<a href="{w.as_uri()}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}">{w.name}</a>\n'
                        for w in files)
        (simple / name / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    return simple
