#!/usr/bin/env bash
# v7 check after the TMA MaxSim threshold: ranker parity (the TMA kernel forced on small cases),
# then inference (batch 8, bf16) at 2,048 (fused-graphs, fused, official-style) and 32,768 (fused,
# official-style), as the targets are stated.
# bash results/bench/scripts/h100_v7_check.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 200 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -k "rank or maxsim or model_fused" \
  -p no:cacheprovider > "$OUT/parity.log" 2>&1; tail -1 "$OUT/parity.log"
B="python3 -m aveyb.cli bench --models avey-b --modes inference --repeats 6 --min-time 0.5"
timeout 200 $B --impls fused-graphs,fused,official-style --lengths 2048 --out "$OUT/inference.jsonl" 2>&1 | tail -1
timeout 150 $B --impls fused,official-style --lengths 32768 --out "$OUT/inference_32k.jsonl" 2>&1 | tail -1
cat "$OUT/inference_32k.jsonl" >> "$OUT/inference.jsonl"
python3 -m aveyb.cli bench --report "$OUT/inference.jsonl" 2>&1 | sed -n 5,10p
