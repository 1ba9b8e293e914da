#!/usr/bin/env bash
# v9 final check: the train step at 2,048 (batch 16, bf16 autocast, AdamW), fused with sparse
# prediction and official-style (dense, as the official code) in one process, then every GPU test.
# bash results/bench/scripts/h100_v9_c.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 290 python3 -m aveyb.cli bench --models avey-b --modes train --train-batch 16 --repeats 6 --min-time 0.5 \
  --train-lengths 2048 --impls fused,official-style --sparse-prediction --out "$OUT/train.jsonl" 2>&1 | tail -1
python3 -c "
import json
for l in open('$OUT/train.jsonl'):
    r = json.loads(l); print(r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), r.get('peak_mem_gb'), [round(t, 1) for t in r['times_ms']])"
AVEYB_AUTOTUNE=0 timeout 290 python3 -m pytest -q -m gpu tests/ -p no:cacheprovider > "$OUT/gpu_tests.log" 2>&1
tail -1 "$OUT/gpu_tests.log"; grep -E "^(FAILED|ERROR)" "$OUT/gpu_tests.log" | head -20
