#!/usr/bin/env bash
# v9 check E: every GPU test at this commit; then inference (batch 8, bf16) with this commit's src and
# with the previous one (.carry/src_old, fb5762f): fused-graphs at 2,048 and fused at 32,768.
# bash results/bench/scripts/h100_v9_e.sh COMMIT
export PYTHONUNBUFFERED=1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
PYTHONPATH=src AVEYB_AUTOTUNE=0 timeout 200 python3 -m pytest -q -m gpu tests/ -p no:cacheprovider > "$OUT/gpu_tests.log" 2>&1
tail -1 "$OUT/gpu_tests.log"; grep -E "^(FAILED|ERROR)" "$OUT/gpu_tests.log" | head -20
B="python3 -m aveyb.cli bench --models avey-b --modes inference --repeats 4 --min-time 0.3"
for v in new old; do
  if [ $v = new ]; then P=src; C=$1; else P=.carry/src_old; C=fb5762f; fi
  PYTHONPATH=$P AVEYB_COMMIT=$C timeout 100 $B --impls fused-graphs --lengths 2048 --out "$OUT/inf_$v.jsonl" > /dev/null 2>&1
  PYTHONPATH=$P AVEYB_COMMIT=$C timeout 110 $B --impls fused --lengths 32768 --out "$OUT/inf_${v}_32k.jsonl" > /dev/null 2>&1
  cat "$OUT/inf_${v}_32k.jsonl" >> "$OUT/inf_$v.jsonl"; rm -f "$OUT/inf_${v}_32k".*
done
python3 -c "
import json
for v in ('new', 'old'):
    for l in open('$OUT/inf_' + v + '.jsonl'):
        r = json.loads(l); print(v, r['commit'], r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), [round(t, 1) for t in r['times_ms']])"
