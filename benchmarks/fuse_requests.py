"""Count the requests that reach the Python FUSE daemon for typical workloads (noise-free, unlike
timings).  Each workload runs twice on one fresh mount of the benchmark image: the first run shows
what a cold kernel cache costs, the second what the kernel's caches failed to absorb.

    python benchmarks/fuse_requests.py [IMAGE]      # default: the mount benchmark's image

Environment switches of condainer.fs.fuse are passed through (CONDAINER_FUSE_OPEN=handle to
compare real opens with zero-message opens)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.mount import ENV_PATH, IMPORT, build_image, unmount  # noqa: E402
from condainer.fs.fuse import mount_image  # noqa: E402

WORKLOADS = {
    "find -type f": f"find {ENV_PATH} -type f > /dev/null",
    "heavy import": f"{ENV_PATH}/bin/python -c '{IMPORT}'",
    "read every file": f"find {ENV_PATH} -type f -print0 | xargs -0 cat > /dev/null",
    "ls -lR": f"ls -lR {ENV_PATH} > /dev/null",
}


def main() -> int:
    image = sys.argv[1] if len(sys.argv) > 1 else build_image()
    for name, command in WORKLOADS.items():
        # Fresh mounts: one that runs the workload once (cold), one that runs it twice; the
        # difference is what the second, warm run cost.
        runs = []
        for repeat in (1, 2):
            log = f"/tmp/condainer-fuse-requests-{os.getpid()}.log"
            if os.path.exists(log):
                os.unlink(log)
            os.environ["CONDAINER_FUSE_STATS"] = "1"
            mount_image(image, ENV_PATH, log_path=log)
            try:
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    subprocess.run(command, shell=True, check=True)
                    elapsed = time.perf_counter() - t0
            finally:
                unmount(ENV_PATH)
            for _ in range(50):
                lines = [line for line in open(log) if "requests:" in line]
                if lines:
                    break
                time.sleep(0.1)
            text = lines[-1].split("requests:", 1)[1] if lines else ""
            runs.append((elapsed, dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", text))))
        (t1, c1), (t2, c2) = runs
        warm = {k: c2.get(k, 0) - c1.get(k, 0) for k in c2}
        for label, t, c in (("cold", t1, c1), ("warm", t2, warm)):
            detail = " ".join(f"{k}={v}" for k, v in sorted(c.items()) if v)
            print(f"{name:16s} {label} {t:6.2f} s {sum(c.values()):7d} requests  {detail}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
