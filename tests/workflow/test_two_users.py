"""Two real users of one group share a project on one node, at the same time.

User A builds the environment in a group-shared project directory (setgid 2770, umask 027); A and B
then run it at once, each through `cnd exec` and through a launcher. Each gets a private mount in a
user namespace of their own: neither blocks the other, the host's mount table shows neither, and
nothing is left in the mount base when both are done. A's condainer runs from a venv under A's private home, so
B's launcher cannot start it and must use B's own `cnd`.

Both users are created here (useradd), run with setpriv; /dev/fuse is often root-only on CI
machines, so the scenario runs in a private mount namespace of root where a world-usable copy of the
device node is bind-mounted over /dev/fuse, as a cluster's /dev/fuse is (nothing outside changes).
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from condainer.node import mount_mode
from tests.helpers.users import GROUP, SYSTEM_PYTHON, USERS, ensure_users, site_packages

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("useradd", "groupadd", "setpriv", "unshare", "squashfuse_ll"))
    or not os.path.exists(SYSTEM_PYTHON) or mount_mode.problem() is not None,
    reason="needs root (to create two users), useradd, setpriv, unshare, squashfuse_ll, /usr/bin/python3 (a Python "
           "other users may run) and unprivileged user namespaces",
)

SCENARIO = r"""
set -u
mknod "$S/fuse" c 10 229 && chmod 666 "$S/fuse" && mount --bind "$S/fuse" /dev/fuse || exit 90
as() {  # USER CMD...: run as USER with that user's HOME, PATH and umask 027
    local user=$1; shift
    setpriv --reuid "$user" --regid "$user" --init-groups env -i HOME="$S/home-$user" \
        PATH="$S/bin-$user:/usr/bin:/bin" PYTHONPATH="$PYPATH" CONDAINER_NS_LINGER=1 LANG=C.UTF-8 \
        sh -c 'umask 027; cd "$0" && exec "$@"' "$P" "$@"
}
report() {  # STEP RC FILE
    "$SYSPY" -c 'import json,sys; print(json.dumps({"step": sys.argv[1], "rc": int(sys.argv[2]),
        "out": open(sys.argv[3]).read()}))' "$1" "$2" "$3"
}
A=cndtest-a; B=cndtest-b
as $A "$S/home-$A/venv/bin/python" -m condainer init > "$S/init.out" 2>&1; report init $? "$S/init.out"
"$SYSPY" - "$P/condainer.yml" "$S/base" <<'EOF'
import sys
path, base = sys.argv[1:]
text = open(path).read().replace("mount_base_directory: /tmp", f"mount_base_directory: {base}")
open(path, "w").write(text)
EOF
rm -f "$P/environment.yml"; echo six > "$P/requirements.txt"
as $A "$S/home-$A/venv/bin/python" -m condainer -q build --backend native > "$S/build.out" 2>&1; report build $? "$S/build.out"
code='import os, six, time; time.sleep(2); print(os.getuid(), six.__name__)'
for who in $A $B; do
    as $who "$P/bin/python" -c "$code" > "$S/launcher-$who.out" 2>&1 & echo $! > "$S/launcher-$who.pid"
    as $who cnd exec -- python -c "$code" > "$S/exec-$who.out" 2>&1 & echo $! > "$S/exec-$who.pid"
done
sleep 1
grep -c " $S/base/" /proc/self/mountinfo > "$S/host-mounts.out"; report host-mounts 0 "$S/host-mounts.out"
ls -A /dev/shm > "$S/records.out" 2>&1; report records 0 "$S/records.out"
for step in launcher exec; do for who in $A $B; do
    wait "$(cat "$S/$step-$who.pid")"; report "$step-$who" $? "$S/$step-$who.out"
done; done
as $B "$P/bin/python" -c 'import sys; print(sys.executable)' > "$S/joined.out" 2>&1; report joined-b $? "$S/joined.out"
sleep 4
ls -A "$S/base" > "$S/base.out" 2>&1; report base-after 0 "$S/base.out"
pgrep -u "$A,$B" > "$S/left.out"; report processes-after 0 "$S/left.out"
"""


def test_two_users_of_one_group_run_one_image_at_once():
    uids = ensure_users()
    a, b = USERS
    lab = grp.getgrnam(GROUP).gr_gid
    shared = Path(tempfile.mkdtemp(prefix="condainer-2u-", dir="/tmp"))
    try:
        os.chmod(shared, 0o755)
        site = shared / "site"
        site_packages(site)
        project, base = shared / "project", shared / "base"
        project.mkdir()
        os.chown(project, uids[a], lab)
        os.chmod(project, 0o2770)
        base.mkdir()
        os.chmod(base, 0o1777)  # a node's /tmp
        for user in USERS:
            home = shared / f"home-{user}"
            (home / "bin").mkdir(parents=True)
            os.chmod(home, 0o700)  # A's condainer lives here: B cannot start it
            bindir = shared / f"bin-{user}"
            bindir.mkdir()
            (bindir / "cnd").write_text(f"#!/bin/sh\nexec {SYSTEM_PYTHON} -m condainer \"$@\"\n")
            os.chmod(bindir / "cnd", 0o755)
            for path in (home, home / "bin", bindir):
                os.chown(path, uids[user], uids[user] if user == a else -1)
        # A's own venv of the system Python, under A's private home (what the launchers name)
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(shared / f"home-{a}" / "venv")], check=True)
        subprocess.run(["chown", "-R", f"{uids[a]}:{uids[a]}", str(shared / f"home-{a}")], check=True)
        env = dict(os.environ, S=str(shared), P=str(project), PYPATH=f"{REPO}:{site}", SYSPY=SYSTEM_PYTHON)
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", SCENARIO],
                           capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        steps = {s["step"]: s for s in map(json.loads, r.stdout.splitlines())}
        assert steps["init"]["rc"] == 0 and steps["build"]["rc"] == 0, (steps["init"], steps["build"])
        for step in ("launcher", "exec"):
            for user in USERS:
                s = steps[f"{step}-{user}"]
                assert s["rc"] == 0 and s["out"].split() == [str(uids[user]), "six"], s
        assert steps["host-mounts"]["out"].strip() == "0", "the host's mount table shows no user's mount"
        assert {f".condainer-{uids[a]}", f".condainer-{uids[b]}"} <= set(steps["records"]["out"].split()), \
            "both users held a private mount at the same time"
        assert steps["joined-b"]["rc"] == 0, steps["joined-b"]
        assert steps["base-after"]["out"].split() == [], "the mount base keeps nothing of ours"
        assert steps["processes-after"]["out"].split() == [], "no holder or daemon is left"
        image = next(project.glob("*.squashfs"))
        listing = subprocess.run(["unsquashfs", "-lln", str(image)], capture_output=True, text=True, check=True)
        root_mode = listing.stdout.splitlines()[0].split()[0] if shutil.which("unsquashfs") else "drwxr-x---"
        assert root_mode.startswith("drwxr-x"), f"the image's root lets the project's group in: {root_mode}"
    finally:
        subprocess.run(["pkill", "-KILL", "-u", ",".join(USERS)], capture_output=True)
        shutil.rmtree(shared, ignore_errors=True)
