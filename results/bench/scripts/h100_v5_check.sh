#!/usr/bin/env bash
# Issue 6, session 10: the config-lab winners in the model. Inference at 512..8192 (fused-graphs
# against official-style, one run), then a kernel profile of the fused forward at 2,048.
# bash results/bench/scripts/h100_v5_check.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 300 python3 -m aveyb.cli bench --models avey-b --impls fused-graphs,official-style --modes inference \
  --lengths 512,2048,8192 --repeats 6 --min-time 0.3 --time-budget 280 --out "$OUT/v5_check.jsonl" 2>&1 | tail -2
timeout 150 python3 -m aveyb.bench.profile --impl fused --length 2048 --rows 24 > "$OUT/profile_fused_2048.txt" 2>&1
tail -28 "$OUT/profile_fused_2048.txt"
python3 -m aveyb.cli bench --report "$OUT/v5_check.jsonl" 2>&1 | tail -14
