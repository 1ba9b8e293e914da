#!/usr/bin/env bash
# v11: the train step (batch 16 x 2,048, bf16 autocast, AdamW; fused with sparse prediction, official-style dense),
# then two more processes of fused-graphs beside official-style at 2,048 (batch 8, bf16 inference), to tell the
# machine's noise from the kernels'.   bash results/bench/scripts/h100_v11_c.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 300 python3 -m aveyb.cli bench --models avey-b --modes train --train-batch 16 --repeats 6 --min-time 0.5 \
  --train-lengths 2048 --impls fused,official-style --sparse-prediction --out "$OUT/train.jsonl" 2>&1 | tail -1
B="python3 -m aveyb.cli bench --models avey-b --modes inference --repeats 6 --min-time 0.5 --lengths 2048"
for i in 1 2; do timeout 120 $B --impls fused-graphs,official-style --out "$OUT/process_$i.jsonl" > /dev/null 2>&1; done
cat "$OUT"/process_[12].jsonl > "$OUT/processes.jsonl"; rm -f "$OUT"/process_*
nvidia-smi --query-gpu=clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv,noheader | tee -a "$OUT/gpu.txt"
cat "$OUT/train.jsonl" "$OUT/processes.jsonl" | python3 -c "
import json, sys
for l in sys.stdin:
    r = json.loads(l); print(r['mode'], r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), r.get('peak_mem_gb'), [round(t, 1) for t in r['times_ms']])"
