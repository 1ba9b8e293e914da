#!/usr/bin/env bash
# Host-side (Python) cost of the eager fused forward at short and medium lengths.
# bash results/bench/scripts/h100_host_profile.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
for len in 128 2048; do
  timeout 120 python3 -m aveyb.bench.profile --impl fused --length $len --host --rows 30 > "$OUT/host_$len.txt" 2>&1
  grep -E "function calls|tottime" -A32 "$OUT/host_$len.txt" | cut -c1-150 | head -36
done
