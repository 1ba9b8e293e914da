#!/usr/bin/env bash
# v8 check B: the GEMM modes at 8 x 32,768 (long_modes.py), then the benchmark at this commit:
# inference (batch 8, bf16) at 2,048 (fused-graphs, official-style) and 32,768 (fused,
# official-style), and the sparse fused train step at 2,048 (batch 16).
# bash results/bench/scripts/h100_v8_b.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 200 python3 results/bench/scripts/long_modes.py "$OUT/long_modes.json" 2>&1 | grep -v Warn | tail -16
B="python3 -m aveyb.cli bench --models avey-b --modes inference --repeats 6 --min-time 0.5"
timeout 150 $B --impls fused-graphs,official-style --lengths 2048 --out "$OUT/inference.jsonl" 2>&1 | tail -1
timeout 120 $B --impls fused,official-style --lengths 32768 --out "$OUT/inference_32k.jsonl" 2>&1 | tail -1
cat "$OUT/inference_32k.jsonl" >> "$OUT/inference.jsonl"
timeout 120 python3 -m aveyb.cli bench --models avey-b --modes train --train-batch 16 --repeats 4 --min-time 0.3 \
  --train-lengths 2048 --impls fused --sparse-prediction --out "$OUT/train_sparse.jsonl" 2>&1 | tail -1
python3 -c "
import json
for f in ('inference', 'train_sparse'):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['impl'], r['seq_len'], r['status'], r.get('tokens_per_s'), r.get('peak_mem_gb'))"
