#!/usr/bin/env bash
# v7 TMA MaxSim: ranker parity (bf16 runs the TMA kernel, fp32 the pointer one), the MaxSim lab
# (per-pair kernel from .carry/old_ranker.py, flat pointer kernel, flat TMA kernel), then inference
# at 32,768 / 98,304 / 131,072 (batch 8, bf16): fused, official-style.
# bash results/bench/scripts/h100_v7_tma.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 200 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -k "rank or model_fused" \
  -p no:cacheprovider > "$OUT/parity.log" 2>&1; tail -1 "$OUT/parity.log"
timeout 240 python3 results/bench/scripts/maxsim_lab.py "$OUT/maxsim_lab.json" .carry/old_ranker.py > "$OUT/maxsim_lab.log" 2>&1
tail -7 "$OUT/maxsim_lab.log"
timeout 280 python3 -m aveyb.cli bench --models avey-b --impls fused,official-style --modes inference \
  --lengths 32768,98304,131072 --repeats 3 --min-time 0.3 --out "$OUT/inference.jsonl" 2>&1 | tail -1
python3 -m aveyb.cli bench --report "$OUT/inference.jsonl" 2>&1 | sed -n 5,9p
