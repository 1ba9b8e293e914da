#!/usr/bin/env bash
# Issue-6 train-step measurement (batch 16, bf16 autocast, AdamW): fused (compiled layers, fused
# ranker; dense logits and sparse prediction) against official-style, in one run.
# bash results/bench/scripts/h100_v4_train_final.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
B="python3 -m aveyb.cli bench --models avey-b --modes train --train-lengths 512,2048 --train-batch 16 --repeats 4 --min-time 0.3"
timeout 280 $B --impls fused,official-style --out "$OUT/train.jsonl" 2>&1 | tail -1
timeout 150 $B --impls fused --sparse-prediction --out "$OUT/train_sparse.jsonl" 2>&1 | tail -1
python3 -m aveyb.cli bench --report "$OUT/train.jsonl" 2>&1 | tail -12
python3 -c "
import json
for f in ('train', 'train_sparse'):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['impl'], r['seq_len'], r['status'], r.get('tokens_per_s'), r.get('peak_mem_gb'), r['note'][-50:])"
