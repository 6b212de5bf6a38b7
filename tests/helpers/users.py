"""Real users for the tests where two users share one project (tests/workflow, tests/cluster).

``ensure_users`` creates a group and its users (root only; they stay, as the test users of a CI
machine do); ``site_packages`` installs condainer's dependencies where those users can import them
with the system Python (the tests' own venv lies under /root, which other users cannot enter).
"""

from __future__ import annotations

import grp
import pwd
import subprocess
import sys
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
USERS, GROUP = ("cndtest-a", "cndtest-b"), "cndtest-lab"


def ensure_users(users: tuple[str, ...] = USERS, group: str = GROUP) -> dict[str, int]:
    """Create GROUP and USERS (members of GROUP) unless they exist: {user: uid}."""
    try:
        grp.getgrnam(group)
    except KeyError:
        subprocess.run(["groupadd", group], check=True)
    uids = {}
    for user in users:
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", "-G", group, user], check=True)
        uids[user] = pwd.getpwnam(user).pw_uid
    return uids


def site_packages(into: Path) -> None:
    """condainer's dependencies where both users can import them (/usr/bin/python3's version)."""
    version = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                             capture_output=True, text=True, check=True).stdout.strip()
    deps = ["PySquashfsImage==0.9.0", "mfusepy>=3.1,<4", "zstandard>=0.22", "PyYAML>=6", "click>=8.1"]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(into), "--python-version", version,
                    "--only-binary=:all:", *deps], check=True, capture_output=True)
