#!/usr/bin/env bash
# Kernel profiles (inference and train step) and train-step throughput, dense and sparse prediction.
# bash results/bench/scripts/h100_v4_train.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
timeout 60 python3 -m aveyb.bench.profile --impl fused --length 2048 --rows 14 > "$OUT/profile_inference.txt" 2>&1
grep -E "^ |Self CUDA" "$OUT/profile_inference.txt" | cut -c1-60,100-175 | head -20
timeout 150 python3 -m aveyb.bench.profile --impl fused --mode train --batch 16 --length 2048 --rows 40 \
  --sparse-prediction > "$OUT/profile_train.txt" 2>&1
grep -E "^ |Self CUDA" "$OUT/profile_train.txt" | cut -c1-60,100-175 | head -30
timeout 200 python3 -m aveyb.cli bench --models avey-b --impls fused,official-style --modes train \
  --train-lengths 512,2048 --train-batch 16 --repeats 4 --min-time 0.3 --out "$OUT/train.jsonl" 2>&1 | tail -2
timeout 120 python3 -m aveyb.cli bench --models avey-b --impls fused --modes train --sparse-prediction \
  --train-lengths 512,2048 --train-batch 16 --repeats 4 --min-time 0.3 --out "$OUT/train.jsonl" 2>&1 | tail -2
python3 -c "
import json
for l in open('$OUT/train.jsonl'):
    r = json.loads(l); print(r['impl'], r['seq_len'], r['status'], r.get('tokens_per_s'), r.get('peak_mem_gb'), r['note'][-60:])"
