#!/usr/bin/env bash
# The test suite: set everything up (see bootstrap.sh), lint, then run pytest. Extra arguments go to pytest.
# With no test paths given, the tests of `cnd exec`, the launchers and the kernel run a second time on
# the node's own mount table (mount mode host: what `auto` falls back to where user namespaces are off).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check condainer tests benchmarks
.venv/bin/python -m pytest "$@"
for arg in "$@"; do
    case "$arg" in -*) ;; *) exit 0 ;; esac  # test paths were given: those only
done
CONDAINER_TEST_MOUNT_MODE=host .venv/bin/python -m pytest "$@" \
    tests/workflow/test_exec.py tests/workflow/test_exec_lean.py tests/workflow/test_launchers.py \
    tests/workflow/test_interrupts.py tests/workflow/test_kernel.py tests/workflow/test_one_line_errors.py \
    tests/cluster/test_exec.py
