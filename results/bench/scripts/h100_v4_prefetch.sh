#!/usr/bin/env bash
# The GEMMs' epilogue loads (row scale, mask, bias) issued before the MMAs: GPU parity, GEMM lab,
# inference at 2,048-32,768 side by side with official-style, and a kernel profile.
# bash results/bench/scripts/h100_v4_prefetch.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 200 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -p no:cacheprovider \
  > "$OUT/parity.log" 2>&1; tail -2 "$OUT/parity.log"
timeout 60 python3 results/bench/scripts/gemm_lab.py 16384 > "$OUT/gemm_lab.log" 2>&1; tail -11 "$OUT/gemm_lab.log"
timeout 200 python3 -m aveyb.cli bench --models avey-b --impls fused-graphs,fused,official-style --modes inference \
  --lengths 2048,8192,32768 --repeats 6 --min-time 0.5 --out "$OUT/inference.jsonl" 2>&1 | tail -1
timeout 50 python3 -m aveyb.bench.profile --impl fused --length 2048 --rows 12 > "$OUT/profile.txt" 2>&1
grep -E "_kernel|Self CUDA time" "$OUT/profile.txt" | cut -c1-60,100-175
python3 -m aveyb.cli bench --report "$OUT/inference.jsonl" 2>&1 | grep -E "^\| avey|^\| over|official-style \(measured\)"
