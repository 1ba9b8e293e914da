#!/usr/bin/env bash
# The issue-6 measurement on one GPU, from the repository root: bash results/bench/scripts/h100_final.sh COMMIT
# Writes into $OUT: the bench records (JSONL + markdown + plots), the GEMM lab log and the GPU parity log.
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > "$OUT/gpu.txt"
timeout 340 python3 -m aveyb.cli bench --models avey-b,modernbert --impls fused,official-style,sdpa \
  --modes inference,train,ranker --lengths 128,512,2048,8192,32768,65536,98304,131072 --train-lengths 512,2048 \
  --baseline-max-len 32768 --repeats 5 --min-time 0.2 --time-budget 300 --out "$OUT/h100.jsonl" 2>&1 | tail -40
timeout 60 python3 results/bench/scripts/gemm_lab.py 16384 > "$OUT/lab.log" 2>&1; tail -8 "$OUT/lab.log"
AVEYB_AUTOTUNE=0 timeout 150 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -p no:cacheprovider > "$OUT/parity.log" 2>&1
tail -3 "$OUT/parity.log"
