#!/usr/bin/env bash
# The README's second command, and exactly what CI runs: install (if needed), then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH" OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
ruff check aiida_qrnn tests benchmarks
# Temporary files (the tests' AiiDA profiles with their SQLite databases and file repositories, the demo's profile,
# job folders) go to a RAM-backed folder when /dev/shm has room: on disk every SQLite commit waits ~10 ms for fsync
# (the demo alone commits ~9500 times), in RAM 0.02 ms. QRNN_TEST_TMPDIR=<folder> chooses another place.
if [ -z "${QRNN_TEST_TMPDIR:-}" ] && [ -w /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR == 2 {print $4}')" -gt 4000000 ]; then
  QRNN_TEST_TMPDIR=$(mktemp -d /dev/shm/qrnn-tests.XXXXXX)
  trap 'rm -rf "$QRNN_TEST_TMPDIR"' EXIT
fi
export TMPDIR=${QRNN_TEST_TMPDIR:-${TMPDIR:-/tmp}}
# --durations=25: the slowest tests at the end of every run, so that a test that grows is seen before the limit.
python -m pytest -m 'not slow' --durations=25 "$@"
