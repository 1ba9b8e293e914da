#!/usr/bin/env bash
# v7 final: the whole GPU parity suite, then the train step (batch 16, bf16 autocast, AdamW) with the
# cross-entropy kernel and the written-out compression backward: fused sparse 2,048, fused dense
# and official-style dense 2,048; then the step's op profile.
# bash results/bench/scripts/h100_v7_final.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 280 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -p no:cacheprovider \
  > "$OUT/parity.log" 2>&1; tail -1 "$OUT/parity.log"
B="python3 -m aveyb.cli bench --models avey-b --modes train --train-batch 16 --repeats 4 --min-time 0.3 --train-lengths 2048"
timeout 150 $B --impls fused --sparse-prediction --out "$OUT/train_sparse.jsonl" 2>&1 | tail -1
timeout 100 $B --impls fused,official-style --out "$OUT/train_dense.jsonl" 2>&1 | tail -1
python3 -c "
import json
for f in ('train_sparse', 'train_dense'):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['impl'], r['seq_len'], r['status'], r.get('tokens_per_s'), r.get('peak_mem_gb'), r['note'][-40:])"
timeout 60 python3 results/bench/scripts/train_ops.py 2048 16 > "$OUT/train_ops.txt" 2>&1
grep -E "CompressBackward|Self CUDA time total" "$OUT/train_ops.txt" | cut -c1-62,130-200 | head -4
