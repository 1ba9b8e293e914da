#!/usr/bin/env bash
# v9 check B: the sparse train step (batch 16 x 2,048) with the src of the previous design (carried in
# .carry/src_old) and with this commit's, one after the other on one machine; then where the step's
# GPU waits on the host (train_gaps.py).
# bash results/bench/scripts/h100_v9_b.sh COMMIT
export PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
T="python3 -m aveyb.cli bench --models avey-b --modes train --train-batch 16 --repeats 6 --min-time 0.5 --train-lengths 2048 --impls fused --sparse-prediction"
PYTHONPATH=.carry/src_old timeout 170 $T --out "$OUT/train_old.jsonl" 2>&1 | tail -1
PYTHONPATH=src timeout 170 $T --out "$OUT/train_new.jsonl" 2>&1 | tail -1
PYTHONPATH=src timeout 150 python3 results/bench/scripts/train_gaps.py "$OUT/train_gaps.json" 2>&1 | grep -v Warn | tail -30
python3 -c "
import json
for f in ('train_old', 'train_new'):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), r.get('peak_mem_gb'), [round(t, 1) for t in r['times_ms']])"
