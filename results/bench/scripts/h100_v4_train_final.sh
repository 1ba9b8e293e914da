#!/usr/bin/env bash
# Issue-6 train-step measurement (batch 16, bf16 autocast, AdamW): fused (compiled layers with
# AVEYB_COMPILE_DYNAMIC auto and 1; dense and sparse prediction) against official-style, plus a
# profile of the sparse-prediction step. bash results/bench/scripts/h100_v4_train_final.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
AVEYB_AUTOTUNE=0 timeout 60 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -k autocast -p no:cacheprovider > "$OUT/parity_autocast.log" 2>&1; tail -2 "$OUT/parity_autocast.log"
B="python3 -m aveyb.cli bench --models avey-b --modes train --train-lengths 512,2048 --train-batch 16 --repeats 4 --min-time 0.3"
timeout 150 $B --impls fused,official-style --out "$OUT/train.jsonl" 2>&1 | tail -1
timeout 100 $B --impls fused --sparse-prediction --out "$OUT/train.jsonl" 2>&1 | tail -1
AVEYB_COMPILE_DYNAMIC=1 timeout 100 $B --impls fused --sparse-prediction --out "$OUT/train_dynamic1.jsonl" 2>&1 | tail -1
timeout 120 python3 -m aveyb.bench.profile --impl fused --mode train --batch 16 --length 2048 --rows 40 \
  --sparse-prediction > "$OUT/profile_train.txt" 2>&1
python3 -m aveyb.cli bench --report "$OUT/train.jsonl" 2>&1 | tail -14
python3 -c "
import json
for f in ('train', 'train_dynamic1'):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['impl'], r['seq_len'], r['status'], r.get('tokens_per_s'), r.get('peak_mem_gb'), r['note'][-50:])"
