#!/usr/bin/env bash
# v10 final train step: batch 16 x 2,048, bf16 autocast, AdamW; fused with sparse prediction and
# official-style (dense, as the official code) in one process.   bash results/bench/scripts/h100_v10_f.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 400 python3 -m aveyb.cli bench --models avey-b --modes train --train-batch 16 --repeats 6 --min-time 0.5 \
  --train-lengths 2048 --impls fused,official-style --sparse-prediction --out "$OUT/train.jsonl" 2>&1 | tail -1
python3 -c "
import json
for l in open('$OUT/train.jsonl'):
    r = json.loads(l); print(r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), r.get('peak_mem_gb'), [round(t, 1) for t in r['times_ms']])"
