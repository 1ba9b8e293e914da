#!/usr/bin/env bash
# Issue 6, session 10: programmatic dependent launch. GPU parity (PDL, graphs, model, layers), the
# graph-gap diagnosis (PDL off/on alternately), then fused-graphs with PDL against official-style.
# bash results/bench/scripts/h100_v5_pdl.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 150 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -p no:cacheprovider \
  -k "pdl or graphed or model_fused or layer_forward or enricher_modes" > "$OUT/parity_pdl.log" 2>&1; tail -3 "$OUT/parity_pdl.log"
timeout 240 python3 results/bench/scripts/graph_gap.py 512 2048 8192 > "$OUT/graph_gap.log" 2>&1; tail -8 "$OUT/graph_gap.log"
AVEYB_PDL=1 timeout 180 python3 -m aveyb.cli bench --models avey-b --impls fused-graphs,official-style --modes inference \
  --lengths 2048 --repeats 6 --min-time 0.3 --time-budget 170 --out "$OUT/v5_pdl.jsonl" 2>&1 | tail -2
python3 -m aveyb.cli bench --report "$OUT/v5_pdl.jsonl" 2>&1 | tail -12
