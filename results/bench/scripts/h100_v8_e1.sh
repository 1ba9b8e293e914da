#!/usr/bin/env bash
# v8 final, part 1: the enricher-mode parity tests, inference at 2,048 (fused-graphs, fused,
# official-style), then fused at 32,768 and 98,304 with AVEYB_ENRICHER=auto (the default: tma-tanh
# from 65,536 rows) and =ws (the previous default), in the same run.
# bash results/bench/scripts/h100_v8_e1.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 150 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -k "enricher or mode or model_fused" \
  -p no:cacheprovider > "$OUT/parity.log" 2>&1; tail -1 "$OUT/parity.log"
B="python3 -m aveyb.cli bench --models avey-b --modes inference --repeats 4 --min-time 0.3"
timeout 150 $B --impls fused-graphs,fused,official-style --lengths 2048 --out "$OUT/inference_2048.jsonl" 2>&1 | tail -1
timeout 110 $B --impls fused --lengths 32768,98304 --out "$OUT/inference_long_auto.jsonl" 2>&1 | tail -1
AVEYB_ENRICHER=ws timeout 110 $B --impls fused --lengths 32768,98304 --out "$OUT/inference_long_ws.jsonl" 2>&1 | tail -1
python3 -c "
import json
for f in ('inference_2048', 'inference_long_auto', 'inference_long_ws'):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), r.get('peak_mem_gb'), r['note'][-22:])"
