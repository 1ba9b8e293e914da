#!/usr/bin/env bash
# v9 check D: split-major program order for the five mix kernels. In one process, each kernel with
# the previous grid (src carried in .carry/src_old, fb5762f) and the new one (split_order_ab.py);
# then the sparse train step with the previous src and with this commit's, one after the other.
# bash results/bench/scripts/h100_v9_d.sh COMMIT
export PYTHONUNBUFFERED=1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
PYTHONPATH=src timeout 200 python3 results/bench/scripts/split_order_ab.py "$OUT/split_order_ab.json" 2>&1 | grep -v Warn | tail -12
T="python3 -m aveyb.cli bench --models avey-b --modes train --train-batch 16 --repeats 6 --min-time 0.5 --train-lengths 2048 --impls fused --sparse-prediction"
PYTHONPATH=.carry/src_old AVEYB_COMMIT=fb5762f timeout 160 $T --out "$OUT/train_before.jsonl" 2>&1 | tail -1
PYTHONPATH=src AVEYB_COMMIT=$1 timeout 160 $T --out "$OUT/train_after.jsonl" 2>&1 | tail -1
python3 -c "
import json
for f in ('train_before', 'train_after'):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['commit'], r['status'], round(r.get('tokens_per_s') or 0), [round(t, 1) for t in r['times_ms']])"
