#!/usr/bin/env bash
# v11: fused-graphs beside official-style at 2,048 (batch 8, bf16 inference) in three processes, after
# the size-class autotuning keys.   bash results/bench/scripts/h100_v11_f.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader | tee "$OUT/gpu.txt"
B="python3 -m aveyb.cli bench --models avey-b --modes inference --repeats 6 --min-time 0.5 --lengths 2048"
for i in 1 2 3; do timeout 120 $B --impls fused-graphs,official-style --out "$OUT/process_$i.jsonl" > /dev/null 2>&1; done
cat "$OUT"/process_[123].jsonl > "$OUT/processes.jsonl"; rm -f "$OUT"/process_*
python3 -c "
import json
for l in open('$OUT/processes.jsonl'):
    r = json.loads(l); print(r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), [round(t, 2) for t in r['times_ms']])"
