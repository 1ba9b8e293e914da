#!/usr/bin/env bash
# v9 probe A: where the sparse train step (batch 16 x 2,048) goes against the 580K budget
# (train_floor.py), then every training-layer kernel's launch configs at the step's shapes (train_lab.py).
# bash results/bench/scripts/h100_v9_a.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 200 python3 results/bench/scripts/train_floor.py "$OUT/train_floor.json" 2>&1 | grep -v Warn | tail -12
timeout 330 python3 results/bench/scripts/train_lab.py > "$OUT/train_lab.log" 2>&1
grep -A 40 "best per kernel" "$OUT/train_lab.log"; grep -c FAILED "$OUT/train_lab.log"; grep default "$OUT/train_lab.log"
