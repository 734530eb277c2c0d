#!/usr/bin/env bash
# Install everything aiida-qrnn needs on Debian 12: the real codes (psi4, xtb, packmol) from Debian's packages when
# running as root, and a virtual environment in .venv with the package in editable mode. Safe to run again: each
# step is skipped when it is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# program:package — the codes, and a one-node SLURM cluster with SSH for the production-path tests.
DEBIAN_PACKAGES=(psi4:psi4 xtb:xtb packmol:packmol slurmctld:slurm-wlm munged:munge sshd:openssh-server)
missing=()
for entry in "${DEBIAN_PACKAGES[@]}"; do
  program=${entry%%:*}
  command -v "$program" >/dev/null || [ -x "/usr/sbin/$program" ] || missing+=("${entry##*:}")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo ">> apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "!! missing programs ${missing[*]}: install them with 'sudo apt-get install ${missing[*]}'" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo ">> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi

# Reinstall only when the dependency list changed. torch comes first, pinned, so that no dependency pulls a
# multi-GB CUDA build onto a CPU machine.
stamp=".venv/.aiida-qrnn-$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo ">> pip install torch (pinned) and aiida-qrnn[tests,pyscf,openmm,amber,bench] into .venv"
  .venv/bin/pip install -q -c requirements/constraints.txt torch
  .venv/bin/pip install -q -c requirements/constraints.txt -e '.[tests,pyscf,openmm,amber,bench]'
  rm -f .venv/.aiida-qrnn-*
  touch "$stamp"
fi
