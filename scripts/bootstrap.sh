#!/usr/bin/env bash
# Set up everything condainer, its tests and its benchmarks need on a fresh Debian/Ubuntu machine:
# the system packages (as root, through apt-get) and a virtual environment in .venv with condainer
# installed in editable mode. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(
    python3 python3-venv python3-dev   # the host Python for .venv (and pip-only projects)
    squashfs-tools                     # mksquashfs/unsquashfs: the native backend and cross-checks
    squashfs-tools-ng                  # sqfsdiff/rdsquashfs/gensquashfs: a third implementation, for tests
    squashfuse                         # squashfuse / squashfuse_ll: the native mount backend
    fuse3 libfuse3-3                   # fusermount3 and the library mfusepy loads
    libfuse2                           # libfuse 2.9: the fallback FUSE layer is tested on it too
    util-linux kmod                    # mount -o loop (kernel reader in tests), losetup
    procps psmisc                      # ps/fuser used by tests to find daemons
    time strace                        # /usr/bin/time -v (peak RSS) and strace (file syscalls) in benchmarks
    bash zsh                           # `source ./activate` is tested in both
    mpich libmpich-dev                 # MPI ranks sharing memory through a private mount (tests)
)

need_apt=0
for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt=1
done
if [ "$need_apt" = 1 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "bootstrap: system packages missing; run as root: apt-get install -y ${SYSTEM_PACKAGES[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${SYSTEM_PACKAGES[@]}" >/dev/null
fi

# Slurm's daemons and munge for the cluster tests (tests/cluster/ start a private Slurm).
bash scripts/install-slurm.sh

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
log=$(mktemp)
if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".[test,bench]"; } >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"
    echo "bootstrap: pip install failed (output above)" >&2
    exit 1
fi
rm -f "$log"
echo "bootstrap: ready (.venv/bin/cnd $(.venv/bin/cnd version | cut -d' ' -f2))" >&2
