#!/usr/bin/env bash
# The main job end to end on a fresh machine: set up, build a small pip environment from PyPI into a
# squashfs image, and import it from the mounted image with `cnd exec`. BACKEND=python uses our own
# writer and FUSE reader instead of mksquashfs/squashfuse.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
CND="$PWD/.venv/bin/cnd"
BACKEND=${BACKEND:-auto}
work=$(mktemp -d /tmp/condainer-demo.XXXXXX)
trap '"$CND" -q -d "$work" umount 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
printf 'requests\nsix\n' > requirements.txt
set -x
"$CND" init
"$CND" build --backend "$BACKEND"
"$CND" status
"$CND" exec --backend "$BACKEND" -- python -c 'import requests, six, sys; print("imported requests", requests.__version__, "from", sys.prefix)'
set +x
echo "demo: OK" >&2
