#!/usr/bin/env bash
# v6 final, part A: the whole GPU parity suite (inference kernels, whose mix kernels gained the
# training path's SAVE switch, and the training layer), then inference at 2,048 and 32,768 tokens
# (batch 8, bf16) for fused-graphs, fused and official-style as a regression check.
# bash results/bench/scripts/h100_v6_final_a.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 300 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -p no:cacheprovider \
  > "$OUT/parity.log" 2>&1; tail -1 "$OUT/parity.log"
timeout 200 python3 -m aveyb.cli bench --models avey-b --impls fused-graphs,fused,official-style --modes inference \
  --lengths 2048,32768 --repeats 4 --min-time 0.3 --out "$OUT/inference.jsonl" 2>&1 | tail -1
python3 -m aveyb.cli bench --report "$OUT/inference.jsonl" 2>&1 | tail -8
