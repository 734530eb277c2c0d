#!/usr/bin/env bash
# The README's second command, and exactly what CI runs: install (if needed), then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH" OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
ruff check aiida_qrnn tests benchmarks
# --durations=25: the slowest tests at the end of every run, so that a test that grows is seen before the limit.
exec python -m pytest -m 'not slow' --durations=25 "$@"
