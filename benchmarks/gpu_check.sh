#!/usr/bin/env bash
# The one prepared GPU check (issue "Speed", docs/benchmarks.md): on a bare machine with torch and a CUDA GPU, in
# the repository root, it prints and saves, each beside TorchANI 2.9's ANI-2x architecture in the same run:
#   * energy+forces ms and peak memory at 1 500, 8 000 and 32 000 atoms (bench_model.py),
#   * ms per NVT and NPT step of the MD engine, ns/day at the paper's step, and 10 batched 1 500-atom replicas
#     against the same replicas one after another (bench_md.py),
#   * training clusters/s of the QRNN and of one ANI-2x network on the same batches (bench_training.py), at batch
#     256 in float32, TF32 and bf16 (one run, one data set; keys cuda-float32[-tf32|-bf16]-batch256 of training.json),
#     and the QRNN's validation curve in float32, TF32 and bf16 on the same data (train_precision_check in
#     bench_training.py --precision-curves: does reduced precision keep the loss within tolerance of float32?).
# Results land in benchmarks/results/*_cuda.json (and training.json) and, when $OUT is set, are copied there.
#
# Wheels it needs besides torch (pure Python or manylinux, Python 3.12 on the lent machines) are fetched HERE by
# `bash benchmarks/gpu_check.sh --download` into .whl/ (ignored by git), and carried along: ase, vesin,
# vesin-torch, tad-dftd3, tad-mctc, torchani. Budget: under 10 minutes on one H100/H200 (the parts' limits add up
# to 12); each part has its own time limit so that one slow part cannot eat the others. With less device time left,
# GPU_CHECK_PARTS names the parts to run (default: "model md training curves").
#
#   bash benchmarks/gpu_check.sh --download          # here, once: fill .whl/
#   bash benchmarks/gpu_check.sh                     # there (device tool: carry .whl)
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 bash benchmarks/gpu_check.sh          # a dry run of the script on a CPU
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(ase==3.29.0 vesin==0.6.2 vesin-torch==0.6.2 tad-dftd3==0.7.0 tad-mctc==0.8.0 torchani==2.9.0)

if [ "${1:-}" = --download ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  for wheel in "${WHEELS[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$wheel" || exit 1
  done
  ls .whl
  exit 0
fi

DEVICE=${GPU_CHECK_DEVICE:-cuda}
SIZES="1500 8000 32000" ROUNDS=20 MD_STEPS=200 REPLICAS=10 REPLICA_ATOMS=1500 TRAIN_BATCH=256 TRAIN_STEPS=20
CURVE_CLUSTERS=1024 CURVE_EPOCHS=6
PARTS=" ${GPU_CHECK_PARTS:-model md training curves} "
if [ -n "${GPU_CHECK_QUICK:-}" ]; then  # exercises every part in a minute or two, numbers meaningless
  SIZES="300" ROUNDS=2 MD_STEPS=2 REPLICAS=2 REPLICA_ATOMS=300 TRAIN_BATCH=8 TRAIN_STEPS=2
  CURVE_CLUSTERS=16 CURVE_EPOCHS=1
fi
export PYTHONUNBUFFERED=1 TORCHANI_NO_WARN_EXTENSIONS=1
PYTHON=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

started=$(date +%s)
wanted() { [[ $PARTS == *" $1 "* ]]; }  # wanted NAME: is this part asked for (GPU_CHECK_PARTS)?
part() {  # part SECONDS NAME COMMAND...: run one benchmark within its own time limit; a failure does not stop the rest
  local limit=$1 name=$2
  shift 2
  echo "=== $name (limit ${limit} s, $(($(date +%s) - started)) s into the check)"
  timeout "$limit" "$@"
  local status=$?
  [ $status = 0 ] || echo "!!! $name ended with status $status"
}

if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  # TorchANI's cuAEV ships as source; it builds with the machine's nvcc where it can, else TorchANI runs 'pyaev'
  # (the benchmark records which strategy it used).
  part 150 'TorchANI cuAEV build' "$PYTHON" -c 'from torchani.cli import main; main()' build-extensions --sm 9.0 \
    >/tmp/cuaev_build.log 2>&1
  tail -3 /tmp/cuaev_build.log
fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

# shellcheck disable=SC2086  # SIZES is a list of numbers
wanted model && part 120 'model: energy+forces beside ANI-2x' "$PYTHON" benchmarks/bench_model.py \
  --device "$DEVICE" --atoms $SIZES --rounds $ROUNDS
# shellcheck disable=SC2086
wanted md && part 180 'MD: NVT/NPT steps, ns/day, 10 batched replicas' "$PYTHON" benchmarks/bench_md.py \
  --device "$DEVICE" --sizes $SIZES --steps $MD_STEPS --replicas $REPLICAS --replica-atoms $REPLICA_ATOMS
PRECISIONS="highest tf32 bf16"
[ "$DEVICE" = cuda ] || PRECISIONS=highest  # TF32/bf16 are CUDA-only settings
# shellcheck disable=SC2086
wanted training && part 150 'training: clusters/s beside ANI-2x (float32, TF32, bf16)' "$PYTHON" \
  benchmarks/bench_training.py --device "$DEVICE" --batch-size $TRAIN_BATCH --steps $TRAIN_STEPS --precision $PRECISIONS
# shellcheck disable=SC2086
wanted curves && part 120 'training: validation curves in float32, TF32, bf16' "$PYTHON" \
  benchmarks/bench_training.py --device "$DEVICE" --precision-curves $PRECISIONS --curve-clusters $CURVE_CLUSTERS \
  --curve-epochs $CURVE_EPOCHS

echo "=== done in $(($(date +%s) - started)) s"
if [ -n "${OUT:-}" ]; then
  cp benchmarks/results/*_"$DEVICE".json benchmarks/results/training.json "$OUT"/ 2>/dev/null || true
fi
