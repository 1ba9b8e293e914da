#!/usr/bin/env bash
# v10: the dynamic mix with its norms in their own loop and pipelined configs. Every config test of
# the dynamic forward and the layer / model GPU parity tests; then inference (batch 8, bf16)
# fused-graphs at 2,048 and fused at 32,768, this commit and the previous src (.carry/src_old), in turn.
# bash results/bench/scripts/h100_v10_d.sh COMMIT
export PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
PYTHONPATH=src AVEYB_AUTOTUNE=0 timeout 200 python3 -m pytest -q -m gpu -p no:cacheprovider \
  tests/test_kernel_configs_gpu.py tests/test_kernels_parity.py -k "dynamic_mix_config or layer or model" \
  > "$OUT/gpu_tests.log" 2>&1
tail -1 "$OUT/gpu_tests.log"; grep -E "^(FAILED|ERROR)" "$OUT/gpu_tests.log" | head -20
B="python3 -m aveyb.cli bench --models avey-b --modes inference --repeats 4 --min-time 0.3"
for side in after before; do
  src=src; [ $side = before ] && src=.carry/src_old
  PYTHONPATH=$src timeout 85 $B --impls fused-graphs --lengths 2048 --out "$OUT/inference_$side.jsonl" > /dev/null 2>&1
  PYTHONPATH=$src timeout 85 $B --impls fused --lengths 32768 --out "$OUT/inference_${side}_32k.jsonl" > /dev/null 2>&1
  cat "$OUT/inference_${side}_32k.jsonl" >> "$OUT/inference_$side.jsonl"; rm -f "$OUT"/inference_${side}_32k*
done
python3 -c "
import json
for f in ('after', 'before'):
    for l in open('$OUT/inference_' + f + '.jsonl'):
        r = json.loads(l); print(f, r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), [round(t, 1) for t in r['times_ms']])"
