#!/usr/bin/env bash
# v7 train: parity of the cross-entropy kernel, the masked-LM loss and the ranker; the loss lab;
# then the train step (batch 16, bf16 autocast, AdamW): fused sparse at 512 / 2,048, fused dense and
# official-style dense at 2,048.
# bash results/bench/scripts/h100_v7_train.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 200 python3 -m pytest -q -m gpu tests/test_kernels_parity.py \
  -k "cross_entropy or masked_lm_loss or rank" -p no:cacheprovider > "$OUT/parity.log" 2>&1; tail -1 "$OUT/parity.log"
timeout 100 python3 results/bench/scripts/ce_lab.py "$OUT/ce_lab.json" > "$OUT/ce_lab.log" 2>&1; tail -3 "$OUT/ce_lab.log"
B="python3 -m aveyb.cli bench --models avey-b --modes train --train-batch 16 --repeats 4 --min-time 0.3"
timeout 240 $B --impls fused --sparse-prediction --train-lengths 512,2048 --out "$OUT/train_sparse.jsonl" 2>&1 | tail -1
timeout 150 $B --impls fused,official-style --train-lengths 2048 --out "$OUT/train_dense.jsonl" 2>&1 | tail -1
python3 -c "
import json
for f in ('train_sparse', 'train_dense'):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['impl'], r['seq_len'], r['status'], r.get('tokens_per_s'), r.get('peak_mem_gb'), r['note'][-40:])"
