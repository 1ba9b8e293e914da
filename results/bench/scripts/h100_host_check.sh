#!/usr/bin/env bash
# After caching the capability query: GPU parity of the layer, model and graph paths, and the
# eager vs graphed forward at 128 and 2,048 tokens. bash results/bench/scripts/h100_host_check.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
AVEYB_AUTOTUNE=0 timeout 120 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -p no:cacheprovider \
  -k "layer_forward or enricher_modes or model_fused or graphed" > "$OUT/parity.log" 2>&1; tail -1 "$OUT/parity.log"
timeout 100 python3 -m aveyb.cli bench --models avey-b --impls fused,fused-graphs --modes inference \
  --lengths 128,2048 --repeats 6 --min-time 0.5 --out "$OUT/host_check.jsonl" 2>&1 | grep -E "^\| avey"
