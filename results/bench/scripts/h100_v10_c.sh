#!/usr/bin/env bash
# v10 train step after the dynamic-mix fix: batch 16 x 2,048, bf16 autocast, AdamW; fused with sparse
# prediction and official-style (dense, as the official code) in one process; then the kernel times
# of the fused inference forward at 8 x 2,048.   bash results/bench/scripts/h100_v10_c.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 330 python3 -m aveyb.cli bench --models avey-b --modes train --train-batch 16 --repeats 6 --min-time 0.5 \
  --train-lengths 2048 --impls fused,official-style --sparse-prediction --out "$OUT/train.jsonl" 2>&1 | tail -1
timeout 150 python3 -m aveyb.bench.profile --impl fused --length 2048 > "$OUT/profile_2048.txt" 2>&1
python3 -c "
import json
for f in ('train',):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['model'], r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), r.get('peak_mem_gb'), [round(t, 1) for t in r['times_ms']])"
