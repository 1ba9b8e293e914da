#!/usr/bin/env bash
# Train step at 512 tokens: host-side profile (cProfile) of the hand-written training layer, and
# throughput of both AVEYB_TRAIN_LAYER modes and official-style in one run.
# bash results/bench/scripts/h100_v6_host.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
timeout 150 python3 -m aveyb.bench.profile --impl fused --mode train --batch 16 --length 512 --rows 30 --host \
  --sparse-prediction > "$OUT/host_train_512.txt" 2>&1; head -45 "$OUT/host_train_512.txt" | cut -c1-150
B="python3 -m aveyb.cli bench --models avey-b --modes train --train-lengths 512,2048 --train-batch 16 --repeats 4 --min-time 0.3"
AVEYB_TRAIN_LAYER=compile timeout 200 $B --impls fused --sparse-prediction --out "$OUT/train_compile_sparse.jsonl" 2>&1 | tail -1
timeout 100 $B --impls fused --sparse-prediction --out "$OUT/train_sparse.jsonl" 2>&1 | tail -1
python3 -c "
import json
for f in ('train_compile_sparse', 'train_sparse'):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['impl'], r['seq_len'], r['status'], r.get('tokens_per_s'), r.get('peak_mem_gb'), r['note'][-50:])"
