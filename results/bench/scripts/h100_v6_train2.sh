#!/usr/bin/env bash
# Training layer after the first profile: GPU parity of the training path, a train-step kernel
# profile, and train-step throughput (batch 16, bf16 autocast, AdamW) of the hand-written layer
# (dense and sparse prediction) against official-style in one run.
# bash results/bench/scripts/h100_v6_train2.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
timeout 200 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -k "training_path and not compiled" -x \
  -p no:cacheprovider > "$OUT/parity_train.log" 2>&1; tail -1 "$OUT/parity_train.log"
timeout 120 python3 -m aveyb.bench.profile --impl fused --mode train --batch 16 --length 2048 --rows 40 \
  --sparse-prediction > "$OUT/profile_train.txt" 2>&1
grep -E "^ |Self CUDA" "$OUT/profile_train.txt" | cut -c1-60,100-175,185-200 | head -44
B="python3 -m aveyb.cli bench --models avey-b --modes train --train-lengths 512,2048 --train-batch 16 --repeats 4 --min-time 0.3"
timeout 240 $B --impls fused,official-style --out "$OUT/train.jsonl" 2>&1 | tail -1
timeout 120 $B --impls fused --sparse-prediction --out "$OUT/train_sparse.jsonl" 2>&1 | tail -1
python3 -c "
import json
for f in ('train', 'train_sparse'):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['impl'], r['seq_len'], r['status'], r.get('tokens_per_s'), r.get('peak_mem_gb'), r['note'][-50:])"
