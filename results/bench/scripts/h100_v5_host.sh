#!/usr/bin/env bash
# Issue 6, session 10: cached shared-memory layouts for the Gluon descriptors (host side of eager
# forwards). GPU parity of the Gluon paths, then eager fused, fused-graphs and official-style at
# 128, 512 and 2,048 in one run.   bash results/bench/scripts/h100_v5_host.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 120 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -p no:cacheprovider \
  -k "enricher_modes or model_fused or graphed" > "$OUT/parity.log" 2>&1; tail -1 "$OUT/parity.log"
timeout 200 python3 -m aveyb.cli bench --models avey-b --impls fused,fused-graphs,official-style --modes inference \
  --lengths 128,512,2048 --repeats 4 --min-time 0.3 --time-budget 190 --out "$OUT/host.jsonl" 2>&1 | tail -1
python3 -m aveyb.cli bench --report "$OUT/host.jsonl" 2>&1 | grep "avey-b |"
