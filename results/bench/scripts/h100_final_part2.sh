#!/usr/bin/env bash
# Second call of the issue-6 measurement (the first one's --time-budget cut the ranker rows and the
# official-style 2,048-token train step): bash results/bench/scripts/h100_final_part2.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
timeout 230 python3 -m aveyb.cli bench --models avey-b --impls fused,official-style --modes ranker,train \
  --lengths 2048,8192,32768,131072 --train-lengths 2048 --repeats 5 --min-time 0.2 --time-budget 200 \
  --out "$OUT/h100_part2.jsonl" 2>&1 | tail -30
