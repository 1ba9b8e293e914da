#!/usr/bin/env bash
# v10 inference after the dynamic-mix fix (batch 8, bf16): fused-graphs and official-style at 2,048,
# fused and official-style at 32,768 / 98,304 / 131,072, side by side in one process per group.
# bash results/bench/scripts/h100_v10_b.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
B="python3 -m aveyb.cli bench --models avey-b --modes inference --repeats 4 --min-time 0.3"
timeout 150 $B --impls fused-graphs,official-style --lengths 2048 --out "$OUT/inference.jsonl" 2>&1 | tail -1
timeout 330 $B --impls fused,official-style --lengths 32768,98304,131072 --out "$OUT/inference_long.jsonl" 2>&1 | tail -1
cat "$OUT/inference_long.jsonl" >> "$OUT/inference.jsonl"; rm -f "$OUT"/inference_long*
python3 -c "
import json
for l in open('$OUT/inference.jsonl'):
    r = json.loads(l); print(r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), r.get('peak_mem_gb'), [round(t, 1) for t in r['times_ms']])"
