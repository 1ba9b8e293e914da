#!/usr/bin/env bash
# v10 final inference (batch 8, bf16): fused-graphs and official-style at 2,048 in one process, fused
# and official-style at 32,768 in one process; then fused-graphs at 2,048 with the previous src
# (.carry/src_old) and with this commit, in that order.   bash results/bench/scripts/h100_v10_e.sh COMMIT
export PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
B="python3 -m aveyb.cli bench --models avey-b --modes inference --repeats 4 --min-time 0.3"
PYTHONPATH=src timeout 150 $B --impls fused-graphs,official-style --lengths 2048 --out "$OUT/inference.jsonl" > /dev/null 2>&1
PYTHONPATH=src timeout 130 $B --impls fused,official-style --lengths 32768 --out "$OUT/inference_32k.jsonl" > /dev/null 2>&1
cat "$OUT/inference_32k.jsonl" >> "$OUT/inference.jsonl"; rm -f "$OUT"/inference_32k*
PYTHONPATH=.carry/src_old timeout 85 $B --impls fused-graphs --lengths 2048 --out "$OUT/ab_before.jsonl" > /dev/null 2>&1
PYTHONPATH=src timeout 85 $B --impls fused-graphs --lengths 2048 --out "$OUT/ab_after.jsonl" > /dev/null 2>&1
python3 -c "
import json
for f in ('inference', 'ab_before', 'ab_after'):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), r.get('peak_mem_gb'), [round(t, 1) for t in r['times_ms']])"
