#!/bin/bash
# bash benchmarks/device_check.sh [--smoke]      (from the repository root; at most 8 minutes on one H100 / H200)
#
# One command for a machine with one GPU: rstar_jax's figures (benchmarks/device_check.py: decode tokens/s at the
# 1.5B and 7B shapes next to the HBM roofline, compile time, PPM scoring throughput, the tree workload's
# prefilled / unique ratio, the SFT step's MFU at 1.5B, sequence 2048), then, in the same command on the same
# card, the shared anchors ../shared/bench/gpu_jax_decode.py and gpu_anchor_hf.py. Each part has a time slice
# (`timeout`), and each writes its figures as it goes, so a slow part costs only its own later figures.
# Figures go to $OUT (default /tmp): device_check.json, jax_decode.json, anchor_hf.json, and the logs.
#
# The anchors are looked up in $SHARED_BENCH, ./shared/bench, ../shared/bench. The device machine gets only the
# repository: copy ../shared/bench into ./shared/bench (ignored by git) and carry it. --smoke: tiny shapes, the
# rstar_jax part only (CPU, seconds; tests/test_device_check.py).
set -uo pipefail
OUT=${OUT:-/tmp}
export OUT
PY=${PYTHON:-python}
mkdir -p "$OUT"
if [[ "${1:-}" == --smoke ]]; then
  exec "$PY" benchmarks/device_check.py --smoke --out="$OUT/device_check.json"
fi
START=$(date +%s)
timeout 270 "$PY" benchmarks/device_check.py --out="$OUT/device_check.json" 2>&1 | tee "$OUT/device_check.log"
echo "rstar_jax part: $(( $(date +%s) - START )) s"
BENCH=""
for d in "${SHARED_BENCH:-}" shared/bench ../shared/bench; do
  if [[ -n "$d" && -f "$d/gpu_jax_decode.py" ]]; then BENCH=$d; break; fi
done
if [[ -z "$BENCH" ]]; then
  echo "shared anchors not found (SHARED_BENCH, ./shared/bench, ../shared/bench): skipped"
else
  # what is left of 8 minutes, split between the two anchors; each prints its figures line by line
  LEFT=$(( 470 - ($(date +%s) - START) ))
  timeout $(( LEFT / 2 )) "$PY" "$BENCH/gpu_jax_decode.py" 2>&1 | tee "$OUT/jax_decode.log"
  LEFT=$(( 470 - ($(date +%s) - START) ))
  timeout $(( LEFT > 10 ? LEFT : 10 )) "$PY" "$BENCH/gpu_anchor_hf.py" 2>&1 | tee "$OUT/anchor_hf.log"
fi
echo "device_check total: $(( $(date +%s) - START )) s; figures in $OUT"
