#!/usr/bin/env bash
# CUDA-graph replay vs eager fused forward at short lengths, plus the GPU tests of the changed paths.
# bash results/bench/scripts/h100_graphs.sh COMMIT   (one tile config per kernel: AVEYB_AUTOTUNE=0,
# so both impls run the very same kernels and the ratio isolates the launch overhead)
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1 AVEYB_AUTOTUNE=0
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
timeout 80 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -k "graphed or rank_and_compress" \
  -p no:cacheprovider > "$OUT/parity_graphs.log" 2>&1; tail -2 "$OUT/parity_graphs.log"
timeout 90 python3 -m aveyb.cli bench --models avey-b --impls fused,fused-graphs --modes inference \
  --lengths 128,512,2048 --repeats 8 --min-time 0.2 --out "$OUT/graphs.jsonl" 2>&1 | grep -E "fused|over"
