#!/usr/bin/env bash
# Every open GPU need in one prepared command, for a session lent a device (issues 27, 28).
# Run it as the first device call, from the repository root; parts run in priority order,
# each under its own time budget, each writing its figures to $OUT when it finishes, so a
# run cut off still returns what it did:
#
#   1. engine capacity: GL = 3 and GL = 9 request time against B = 1 .. 4096 for `tiny`
#      and `small` (random weights), CUDA-graph tokens against eager, the no-sync check
#      (a device call under torch.cuda.set_sync_debug_mode("error")), bf16 logits against
#      float32 -> $OUT/capacity.json, $OUT/capacity.log
#   2. the whole Table III (64 songs, full length, 8 pairs x 3 settings + offline, seed 0)
#      generated (and scored, SCORE=1) on the box by bench/gpu_table3.sh -> $OUT/t3/
#
# Not yet in it (issue 28): the end-to-end sessions through uvicorn, and training.
#
#   OUT=$OUT bash bench/gpu_session.sh                                # on the device
#   DEVICE=cpu PY=.venv/bin/python OUT=/tmp/gs bash bench/gpu_session.sh   # the CPU dry run, tiny sizes
set -u
OUT=${OUT:-runs/gpu-out}; mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}; PY=${PY:-python3}
CAP_S=${CAP_S:-240}; T3_S=${T3_S:-300}
export PYTHONPATH=.:/tmp/site PYTHONUNBUFFERED=1
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/log.txt"; }
log "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo no GPU) | $(getconf _NPROCESSORS_ONLN) CPUs | torch $($PY -c 'import torch; print(torch.__version__)' 2>&1 | tail -1)"
if [ "$DEVICE" = cpu ]; then  # the dry run: the same code paths at sizes one core finishes in a minute
  CAP_ARGS="--configs tiny --batches 1,4 --repeats 4"; T3_WORKERS=2; T3_ARGS="--songs 2 --max-bars 2 --pairs 1,3"
else
  CAP_ARGS="--configs tiny,small --batches 1,16,64,256,1024,4096 --repeats 20"; T3_WORKERS=16; T3_ARGS=""
fi
log "1. capacity ($CAP_ARGS, budget ${CAP_S}s)"
timeout -k 5 "$((CAP_S + 30))" $PY bench/gpu_capacity.py --device "$DEVICE" $CAP_ARGS --budget-s "$CAP_S" \
  --out "$OUT/capacity.json" > "$OUT/capacity.log" 2>&1
log "capacity exit $? ($(tail -1 "$OUT/capacity.log"))"
log "2. table III (budget ${T3_S}s)"
OUT="$OUT/t3" DEVICE="$DEVICE" PY="$PY" BUDGET_S="$T3_S" CAPACITY=0 WORKERS="$T3_WORKERS" T3_ARGS="$T3_ARGS" \
  bash bench/gpu_table3.sh > "$OUT/table3.log" 2>&1
log "table3 exit $? (run folders, compressed: $OUT/t3/seed-*.tar.xz)"
log "done"
