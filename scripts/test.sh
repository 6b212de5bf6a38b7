#!/usr/bin/env bash
# The test suite: set everything up (see bootstrap.sh), lint, then run pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check condainer tests benchmarks
.venv/bin/python -m pytest "$@"
