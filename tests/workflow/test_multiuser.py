"""Two users, one node: a FUSE mount serves only the user who made it (no allow_other), so when
another user's mount sits at the project's mount point, `cnd exec`, `cnd mount` and `cnd umount`
must say so in one line instead of failing with EACCES deep inside (they used to end in a
traceback, or report "already mounted" and exit 0).

The other user is `nobody`, mounting with squashfuse_ll through fusermount3.  /dev/fuse is often
root-only on CI machines, so the scenario runs in a private mount namespace where a world-usable
copy of the device node is bind-mounted over /dev/fuse; nothing outside the namespace changes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .conftest import cnd, mountpoint_of, set_config

NOBODY = 65534

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("unshare", "setpriv", "squashfuse_ll", "fusermount3")),
    reason="needs root (a second user, a private mount namespace), unshare, setpriv, squashfuse_ll, fusermount3",
)

SCENARIO = r"""
set -u
mnt="$MP"
cleanup() { umount -l "$mnt" 2>/dev/null; true; }
trap cleanup EXIT
mknod "$SHARED/fuse" c 10 229 && chmod 666 "$SHARED/fuse" && mount --bind "$SHARED/fuse" /dev/fuse || exit 90
mkdir -p "$mnt" && chown "$NOBODY" "$mnt"
setpriv --reuid "$NOBODY" --regid "$NOBODY" --clear-groups squashfuse_ll "$IMAGE" "$mnt" || exit 91
grep -q " $mnt " /proc/self/mountinfo || exit 92
run() {  # name, then cnd arguments: one JSON line with the exit code and stderr
    out=$("$PY" -m condainer -d "$PROJECT" "${@:2}" 2>"$SHARED/err"); rc=$?
    "$PY" -c 'import json,sys; print(json.dumps({"step": sys.argv[1], "rc": int(sys.argv[2]),
        "out": sys.argv[3], "err": open(sys.argv[4]).read()}))' "$1" "$rc" "$out" "$SHARED/err"
}
run exec exec -- true
ls -A "$(dirname "$mnt")" | "$PY" -c 'import json,sys; print(json.dumps({"step": "base-after-refusal", "names": sys.stdin.read().split()}))'
run mount mount
run status status --json
run umount umount
grep -q " $mnt " /proc/self/mountinfo && echo '{"step": "after-umount", "mounted": true}' \
    || echo '{"step": "after-umount", "mounted": false}'
run exec-again exec -- true
"""


@pytest.mark.host_mode
def test_another_users_mount_is_refused_in_one_line():
    shared = Path(tempfile.mkdtemp(prefix="condainer-mu-", dir="/tmp"))
    try:
        os.chmod(shared, 0o755)
        project, base = shared / "project", shared / "base"
        project.mkdir()
        base.mkdir(mode=0o755)
        (project / "requirements.txt").write_text("six\n")
        cnd("init", cwd=project, check=True)
        set_config(project, mount_base_directory=str(base))
        cnd("-q", "build", "--backend", "native", cwd=project, check=True)
        image = shared / "image.sqfs"  # a copy nobody may read (pytest's directories are 0700)
        shutil.copy(next(project.glob("*.squashfs")), image)
        os.chmod(image, 0o644)
        mp = mountpoint_of(project)
        env = dict(os.environ, MP=str(mp), SHARED=str(shared), NOBODY=str(NOBODY), IMAGE=str(image),
                   PY=sys.executable, PROJECT=str(project))
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", SCENARIO],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        steps = {s["step"]: s for s in map(json.loads, r.stdout.splitlines())}
        for name in ("exec", "mount"):
            err = steps[name]["err"].strip().splitlines()
            assert steps[name]["rc"] != 0 and len(err) == 1, steps[name]
            assert err[0].startswith("cnd: error: ") and f"mounted by another user (uid {NOBODY})" in err[0]
        assert json.loads(steps["status"]["out"])["mounted_by_other_uid"] == NOBODY
        left = [n for n in steps["base-after-refusal"]["names"] if n.startswith(".condainer-")]
        assert not left, f"a refused exec leaves no state directory: {left}"
        # root may unmount anyone's mount; the mount point directory stays nobody's, and we do not
        # mount into a directory another user controls
        assert steps["umount"]["rc"] == 0, steps["umount"]
        assert steps["after-umount"]["mounted"] is False
        again = steps["exec-again"]
        assert again["rc"] != 0 and f"belongs to another user (uid {NOBODY})" in again["err"], again
    finally:
        subprocess.run(["umount", "-l", str(mountpoint_of(project))], capture_output=True)
        shutil.rmtree(shared, ignore_errors=True)
