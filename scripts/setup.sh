#!/usr/bin/env bash
# The README's first command: install, create the embedded AiiDA profile (SQLite + ZeroMQ, no services needed),
# register localhost and the codes, and run the end-to-end demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH" OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
aiida-qrnn setup
aiida-qrnn demo "$@"
