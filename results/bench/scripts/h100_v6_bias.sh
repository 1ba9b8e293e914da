#!/usr/bin/env bash
# v6c: the enricher bias gradient from the weight-gradient GEMM (xn stored with a ones column) in
# place of the gate backward's column sums. Training-path GPU parity, then the train step at 2,048
# (batch 16, bf16 autocast, AdamW): hand-written layer sparse and dense, official-style, one run.
# bash results/bench/scripts/h100_v6_bias.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1 AVEYB_TRAIN_LAYER=triton
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
timeout 150 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -k "training_path and not compiled" -x \
  -p no:cacheprovider > "$OUT/parity_train.log" 2>&1; tail -1 "$OUT/parity_train.log"
B="python3 -m aveyb.cli bench --models avey-b --modes train --train-lengths 2048 --train-batch 16 --repeats 4 --min-time 0.3"
timeout 150 $B --impls fused --sparse-prediction --out "$OUT/train_sparse.jsonl" 2>&1 | tail -1
timeout 150 $B --impls fused,official-style --out "$OUT/train.jsonl" 2>&1 | tail -1
python3 -c "
import json
for f in ('train_sparse', 'train'):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), r.get('peak_mem_gb'), r['note'][-60:])"
