#!/usr/bin/env bash
# v8 final, part 2: inference (batch 8, bf16) fused and official-style at 32,768 / 98,304 / 131,072,
# then the sparse fused train step at 2,048 (batch 16, bf16 autocast, AdamW).
# bash results/bench/scripts/h100_v8_e2.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 300 python3 -m aveyb.cli bench --models avey-b --impls fused,official-style --modes inference \
  --lengths 32768,98304,131072 --repeats 3 --min-time 0.3 --out "$OUT/inference_long.jsonl" 2>&1 | tail -1
timeout 200 python3 -m aveyb.cli bench --models avey-b --modes train --train-batch 16 --repeats 6 --min-time 0.5 \
  --train-lengths 2048 --impls fused --sparse-prediction --out "$OUT/train_sparse.jsonl" 2>&1 | tail -1
python3 -c "
import json
for f in ('inference_long', 'train_sparse'):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), r.get('peak_mem_gb'), [round(t, 1) for t in r['times_ms']])"
