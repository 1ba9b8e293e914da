#!/usr/bin/env bash
# v11 after size-class autotuning keys: the compression's config tests (the last two ran past the
# timeout of h100_v11_a.sh at 153a245); the inference sweep of h100_v11_b.sh (Avey-B fused-graphs, fused,
# official-style at 128..131,072; ModernBERT and BERT); then the previous src (.carry/src_old, 55100e8)
# fused-graphs at 128 then 2,048 in one process, as a sweep starts.   bash results/bench/scripts/h100_v11_e.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
AVEYB_AUTOTUNE=0 timeout 120 python3 -m pytest -q -rs -m gpu tests/test_kernel_configs_gpu.py -k compress_config \
  -p no:cacheprovider > "$OUT/compress_config_tests.log" 2>&1; tail -1 "$OUT/compress_config_tests.log"
OUT=$OUT bash results/bench/scripts/h100_v11_b.sh $1 | tail -25
PYTHONPATH=.carry/src_old AVEYB_COMMIT=55100e8 timeout 100 python3 -m aveyb.cli bench --models avey-b --impls fused-graphs \
  --modes inference --lengths 128,2048 --repeats 4 --min-time 0.3 --out "$OUT/old_src_sweep_start.jsonl" 2>&1 | tail -1
python3 -c "
import json
for l in open('$OUT/old_src_sweep_start.jsonl'):
    r = json.loads(l); print('old src', r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), r['kernel_configs'].get('_dynamic_mix_kernel'))"
