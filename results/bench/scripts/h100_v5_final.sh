#!/usr/bin/env bash
# Issue-6 inference measurement, design v5 (warp-specialised Gluon enricher by default): GPU parity,
# the Gluon-GEMM lab, then fused (eager), fused-graphs and official-style at 128..131072 tokens
# (batch 8, bf16) and ModernBERT (SDPA) at 32,768.   bash results/bench/scripts/h100_v5_final.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 200 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -p no:cacheprovider \
  > "$OUT/parity.log" 2>&1; tail -1 "$OUT/parity.log"
timeout 120 python3 results/bench/scripts/ws_lab.py > "$OUT/ws_lab.log" 2>&1; grep -v "^  " "$OUT/ws_lab.log" | tail -14
timeout 330 python3 -m aveyb.cli bench --models avey-b --impls fused-graphs,fused,official-style --modes inference \
  --lengths 128,512,2048,8192,32768,98304,131072 --repeats 4 --min-time 0.3 --time-budget 310 \
  --out "$OUT/inference.jsonl" 2>&1 | tail -2
timeout 50 python3 -m aveyb.cli bench --models modernbert --impls sdpa --modes inference \
  --lengths 32768 --repeats 2 --min-time 0.1 --out "$OUT/inference.jsonl" 2>&1 | tail -1
python3 -m aveyb.cli bench --report "$OUT/inference.jsonl" 2>&1 | tail -30
