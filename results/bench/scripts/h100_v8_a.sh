#!/usr/bin/env bash
# v8 check A: every GPU test of the repository at this commit, then the 32,768-token floor
# (long_floor.py: fused forward, MaxSim, the cuBLAS GEMM chain long and short, the gate's bytes).
# bash results/bench/scripts/h100_v8_a.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 300 python3 -m pytest -q -m gpu tests/ -p no:cacheprovider > "$OUT/gpu_tests.log" 2>&1
tail -1 "$OUT/gpu_tests.log"; grep -E "^(FAILED|ERROR)" "$OUT/gpu_tests.log" | head -20
timeout 240 python3 results/bench/scripts/long_floor.py "$OUT/long_floor.json" 2>&1 | grep -v Warn | tail -30
