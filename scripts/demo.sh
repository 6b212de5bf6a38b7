#!/usr/bin/env bash
# The main job end to end on a fresh machine: set up, build a small pip environment from PyPI into
# a squashfs image, and import it from the mounted image with `cnd exec`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
CND="$PWD/.venv/bin/cnd"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$CND" version
echo "demo: not yet available: cnd init/build/exec land with the workflow (issue 5)" >&2
