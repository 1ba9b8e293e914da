#!/usr/bin/env bash
# v11 final inference sweep (batch 8, bf16), one process for Avey-B: fused-graphs, fused and official-style
# at 128..131,072 tokens; then ModernBERT and BERT (SDPA) beside it at 2,048 and 32,768 (ModernBERT) / 2,048 (BERT).
# bash results/bench/scripts/h100_v11_b.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 380 python3 -m aveyb.cli bench --models avey-b --impls fused-graphs,fused,official-style --modes inference \
  --lengths 128,512,2048,8192,32768,98304,131072 --repeats 4 --min-time 0.3 --time-budget 360 \
  --out "$OUT/inference.jsonl" 2>&1 | tail -1
timeout 70 python3 -m aveyb.cli bench --models modernbert --impls sdpa --modes inference \
  --lengths 2048,32768 --repeats 3 --min-time 0.2 --out "$OUT/inference.jsonl" 2>&1 | tail -1
timeout 40 python3 -m aveyb.cli bench --models bert --impls sdpa --modes inference \
  --lengths 2048 --repeats 3 --min-time 0.2 --out "$OUT/inference.jsonl" 2>&1 | tail -1
python3 -c "
import json
for l in open('$OUT/inference.jsonl'):
    r = json.loads(l); print(r['model'], r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), r.get('peak_mem_gb'))"
