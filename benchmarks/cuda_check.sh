#!/usr/bin/env bash
# The CUDA paths, on a lent GPU machine (never in CI): the CUDA op tests, inference parity
# and speed (benchmarks/cuda_check.py), `maskrcnn demo` trained on the GPU with AMP, a
# torchrun DDP run over NCCL, then the whole test suite with the GPU visible.
#
#   OUT=folder bash benchmarks/cuda_check.sh [SECONDS]
#   DRY_RUN=1 bash benchmarks/cuda_check.sh     # print the steps, run nothing
#
# Run from the repo root. SECONDS (default 560) bounds the whole script: each step gets
# its own limit and the test suite gets what is left. Packages the GPU image lacks
# (pycocotools) are installed from .whl/ when that folder holds wheels; ../shared is taken
# from .shared_copy/ when it is not beside the repo. Everything goes to $OUT/log.txt,
# plus cuda_check.json, the demo's metrics.json, summary.json and overlays.png, the DDP run's
# summary.json, host_syncs_cuda.json (host waits per training iteration, counted by the
# profiler and by torch.cuda.set_sync_debug_mode), train_cuda.json (images/s of this
# project and of torchvision's maskrcnn_resnet50_fpn trained the same way, R50-FPN 800 px
# batch 2 and the demo model, float32 and AMP, GPU busy share from the profiler) and
# train_cuda_own_ops.json (the same with this project's ops instead of torchvision's
# kernels, MASKRCNN_OWN_OPS=1) and train_cuda_bf16.json (bfloat16 autocast, both models). The first run (one H200, 2026-11-30) took 375 s without the
# training profile; the profile adds about 60 s.
set -uo pipefail
OUT=${OUT:-runs/cuda_check}
mkdir -p "$OUT"
BUDGET=${1:-560}
START=$(date +%s)
LOG="$OUT/log.txt"
export PYTHONUNBUFFERED=1
if [ -n "${DRY_RUN:-}" ]; then :; elif ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# The console script `maskrcnn` (the docs tests call it): an editable install, no downloads.
[ -n "${DRY_RUN:-}" ] || python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1 \
    || echo "note: pip install -e . failed; tests that call the maskrcnn command will fail"
[ -e ../shared ] || { [ -d .shared_copy ] && ln -s "$PWD/.shared_copy" ../shared; }

step() {  # step LIMIT_S COMMAND... : run with a time limit, log its output, exit code and seconds
    local limit=$1; shift
    if [ -n "${DRY_RUN:-}" ]; then echo "would run (limit ${limit} s): $*"; return; fi
    local left=$(( BUDGET - ($(date +%s) - START) ))
    (( limit > left )) && limit=$left
    if (( limit < 10 )); then echo "=== skipped (no time left): $*" | tee -a "$LOG"; return; fi
    echo "=== $* (limit ${limit} s)" | tee -a "$LOG"
    local t0; t0=$(date +%s)
    timeout "$limit" "$@" >>"$LOG" 2>&1
    echo "=== exit $? after $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
}

step 20 nvidia-smi
step 30 python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"
step 60 python3 -m pytest -q -p no:cacheprovider tests/ops/test_cuda.py
step 120 python3 benchmarks/cuda_check.py --json "$OUT/cuda_check.json"
# The demo recipe on the GPU with mixed precision; its CPU time budget is cut to 150 s.
step 210 python3 -c "import sys; from maskrcnn.cli import main; sys.exit(main())" demo --device cuda --output /tmp/demo_amp \
    --overlays 1 --set solver.amp=true --set solver.max_time_s=150
cp /tmp/demo_amp/metrics.json "$OUT/demo_amp_metrics.json" 2>/dev/null
cp /tmp/demo_amp/summary.json "$OUT/demo_amp_summary.json" 2>/dev/null
cp /tmp/demo_amp/overlays.png "$OUT/demo_amp_overlays.png" 2>/dev/null
# The share of each iteration the demo's training waited for data (pinned batches on CUDA).
step 20 python3 benchmarks/data_wait_share.py /tmp/demo_amp --json "$OUT/demo_amp_data_wait.json"
# DistributedDataParallel over NCCL (one process: one GPU).
step 90 torchrun --nproc_per_node=1 -m maskrcnn.engine.train --config shapes_demo --output /tmp/ddp \
    --set train.device=cuda --set solver.amp=true --set solver.max_iter=100 --set solver.max_time_s=0
cp /tmp/ddp/summary.json "$OUT/ddp_summary.json" 2>/dev/null
# Host waits per training iteration (goal <= 10), profiler count and the CUDA runtime's own.
step 90 python3 benchmarks/host_syncs.py --device cuda --json "$OUT/host_syncs_cuda.json"
# Training speed against torchvision's model, same run, same GPU; a profile of launches,
# GPU busy share and the source lines that wait.
step 180 python3 benchmarks/train.py --device cuda --amp both --setups shapes_demo r50_fpn_800 --torchvision \
    --iters 20 --warmup 5 --profile 3 --json "$OUT/train_cuda.json"
step 90 env MASKRCNN_OWN_OPS=1 python3 benchmarks/train.py --device cuda --amp both --setups r50_fpn_800 \
    --iters 20 --warmup 5 --json "$OUT/train_cuda_own_ops.json"
step 60 python3 benchmarks/train.py --device cuda --amp on --amp-dtype bfloat16 --setups shapes_demo r50_fpn_800 \
    --torchvision --iters 20 --warmup 5 --json "$OUT/train_cuda_bf16.json"
# The whole suite with the GPU visible (the browser tests need packages the image lacks).
export OMP_NUM_THREADS=2
step 600 python3 -m pytest -v -n 8 -p no:cacheprovider tests --ignore=tests/serve
echo "=== total $(( $(date +%s) - START )) s" | tee -a "$LOG"
