#!/usr/bin/env bash
# v9 final: every GPU test (now including every autotuning config of the mix kernels,
# tests/test_kernel_configs_gpu.py), then inference (batch 8, bf16; fused-graphs at 2,048, fused at
# 32,768) and the sparse train step, with the dynamic mix on its one-stage configs.
# bash results/bench/scripts/h100_v9_g.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 280 python3 -m pytest -q -m gpu tests/ -p no:cacheprovider > "$OUT/gpu_tests.log" 2>&1
tail -1 "$OUT/gpu_tests.log"; grep -E "^(FAILED|ERROR)" "$OUT/gpu_tests.log" | head -20
B="python3 -m aveyb.cli bench --models avey-b --modes inference --repeats 4 --min-time 0.3"
timeout 80 $B --impls fused-graphs --lengths 2048 --out "$OUT/inference.jsonl" > /dev/null 2>&1
timeout 90 $B --impls fused --lengths 32768 --out "$OUT/inference_32k.jsonl" > /dev/null 2>&1
cat "$OUT/inference_32k.jsonl" >> "$OUT/inference.jsonl"; rm -f "$OUT"/inference_32k*
timeout 120 python3 -m aveyb.cli bench --models avey-b --modes train --train-batch 16 --repeats 6 --min-time 0.5 \
  --train-lengths 2048 --impls fused --sparse-prediction --out "$OUT/train_sparse.jsonl" > /dev/null 2>&1
python3 -c "
import json
for f in ('inference', 'train_sparse'):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), r.get('peak_mem_gb'), [round(t, 1) for t in r['times_ms']])"
