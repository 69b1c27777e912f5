#!/usr/bin/env bash
# Issue 20's GPU figure in one prepared command: the whole Table III (64 songs, full length,
# 8 pairs x 3 settings + offline, seed 0 by default) generated and scored on a GPU box by the
# same task body as the Ray sweep, in worker processes that share the GPU (the box has no
# Ray). Then issue 14's capacity figure if time is left. Everything lands in $OUT.
#
#   bash bench/gpu_table3.sh            # on the device, from the repository root
#   SEEDS=1,2 BUDGET_S=200 bash bench/gpu_table3.sh
#   DEVICE=cpu PY=.venv/bin/python WORKERS=2 T3_ARGS="--songs 2 --max-bars 2" CAPACITY=0 bash bench/gpu_table3.sh  # CPU check
#
# Packages the box lacks travel as wheels in .whl/ (the device README says how to fetch
# them): pydantic, pydantic_core, annotated_types, typing_inspection, typing_extensions,
# pretty_midi, mido, importlib_resources to generate; to score there too, muspy and its
# music21, miditoolkit, pypianoroll, frechet_music_distance and their small dependencies,
# and transformers >= 5.24 (2026-11-29's box had 5.17, below the pin, and scoring failed
# there). With everything the tree passes the device's 64 MiB: SCORE=0 generates only
# (score here with `streammuse report runs/t3-gpu/seed-0` after unpacking).
set -u
OUT=${OUT:-runs/gpu-out}; mkdir -p "$OUT"
SEEDS=${SEEDS:-0}; WORKERS=${WORKERS:-16}; BUDGET_S=${BUDGET_S:-420}; DEVICE=${DEVICE:-cuda}; PY=${PY:-python3}
export PYTHONPATH=.:/tmp/site PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/log.txt"; }
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || log "wheel install failed"
fi
log "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo no GPU) | $(getconf _NPROCESSORS_ONLN) CPUs | load $(cut -d' ' -f1-3 /proc/loadavg)"
GRAPHS=""
# Smoke: one configuration of 8 songs x 16 bars (25 s on one core of the 2-core dev box),
# first with CUDA graphs; if that fails, the whole run takes the eager step.
for g in "" "--no-cuda-graphs"; do
  if timeout 120 $PY - "$DEVICE" "$g" <<'PY' 2>&1 | tee -a "$OUT/log.txt"; then GRAPHS=$g; break; fi
import sys, time
from pathlib import Path
from streammuse.experiment.config import ReplayConfig
from streammuse.experiment.sweep import _run_remote
cfg = ReplayConfig(testset=Path("testset"), setting="local", clock="sim", servers="per-song", concurrency=64,
                   interval=1, gen_len=3, songs=8, max_bars=16, out=Path("/tmp/smoke"))
t = time.monotonic()
files = _run_remote(cfg, None, False, False, sys.argv[1], sys.argv[2] != "--no-cuda-graphs")
print(f"smoke {sys.argv[1]} {sys.argv[2] or 'graphs'}: local (1, 3), 8 songs x 16 bars in {time.monotonic() - t:.1f} s")
PY
  log "smoke ${g:-graphs} failed"; GRAPHS=failed
done
if [ "$GRAPHS" != failed ]; then
  log "table3 seeds $SEEDS workers $WORKERS $DEVICE ${GRAPHS:-graphs} budget ${BUDGET_S}s ${T3_ARGS:-}"
  SCORING=""; [ "${SCORE:-1}" = 1 ] || SCORING=--no-evaluate
  timeout -k 5 "$BUDGET_S" $PY bench/table3_full.py --out runs/t3-gpu --seeds "$SEEDS" --workers "$WORKERS" \
    --device "$DEVICE" $GRAPHS $SCORING ${T3_ARGS:-} 2>&1 | grep -v "^|" | tee -a "$OUT/log.txt"
  log "table3 exit ${PIPESTATUS[0]}"
  pkill -f multiprocessing.spawn; sleep 1
fi
# Run folders without parts/ (the per-song copies of requests/ticks), compressed.
for s in ${SEEDS//,/ }; do
  [ -d runs/t3-gpu/seed-$s ] && tar cf - --exclude=parts -C runs/t3-gpu seed-$s | xz -T0 -6 > "$OUT/seed-$s.tar.xz"
done
ls -la "$OUT" | tee -a "$OUT/log.txt"
left=$(( ${TOTAL_S:-560} - SECONDS ))
if [ "$left" -gt 75 ] && [ "${CAPACITY:-1}" = 1 ]; then
  log "gpu_capacity budget $((left - 25))s"
  timeout $((left - 15)) $PY bench/gpu_capacity.py --device "$DEVICE" --budget-s $((left - 25)) \
    --out "$OUT/gpu_capacity.json" 2>&1 | tail -40 | tee -a "$OUT/log.txt"
fi
log done
