#!/usr/bin/env bash
# v7 probe 2: the train step's GPU time by op (with the cross-entropy kernel), then inference at
# 2,048 / 32,768 / 98,304 / 131,072 (batch 8, bf16) with the flat-loop MaxSim: fused, official-style.
# bash results/bench/scripts/h100_v7_probe2.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 200 python3 results/bench/scripts/train_ops.py 2048 16 > "$OUT/train_ops.txt" 2>&1; tail -3 "$OUT/train_ops.txt"
timeout 330 python3 -m aveyb.cli bench --models avey-b --impls fused,official-style --modes inference \
  --lengths 2048,32768,98304,131072 --repeats 3 --min-time 0.3 --out "$OUT/inference.jsonl" 2>&1 | tail -1
python3 -m aveyb.cli bench --report "$OUT/inference.jsonl" 2>&1 | tail -8
