#!/usr/bin/env bash
# v7 probe: the MaxSim lab with the short-input chunk sizes, then the train step's GPU time by op
# and input shape (batch 16 x 2,048, sparse prediction).
# bash results/bench/scripts/h100_v7_probe.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 200 python3 results/bench/scripts/maxsim_lab.py "$OUT/maxsim_lab.json" .carry/old_ranker.py > "$OUT/maxsim_lab.log" 2>&1
tail -7 "$OUT/maxsim_lab.log"
timeout 300 python3 results/bench/scripts/train_ops.py 2048 16 > "$OUT/train_ops.txt" 2>&1
head -40 "$OUT/train_ops.txt" | cut -c1-300
