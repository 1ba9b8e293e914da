#!/usr/bin/env bash
# v9 probe F: launch configs under the split-major grids: the mix forward kernels at 8 x 32,768 rows
# (config_lab.py 262144 dynamic,static) and the contextualizer backward kernels at the train step's
# 32,768 rows (train_lab.py scores,mixbwd,static).
# bash results/bench/scripts/h100_v9_f.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 250 python3 results/bench/scripts/config_lab.py 262144 dynamic,static > "$OUT/config_lab_262144.log" 2>&1
grep -A 12 "best per kernel" "$OUT/config_lab_262144.log"; grep default "$OUT/config_lab_262144.log"
timeout 250 python3 results/bench/scripts/train_lab.py scores,mixbwd,static > "$OUT/train_lab.log" 2>&1
grep -A 20 "best per kernel" "$OUT/train_lab.log"; grep default "$OUT/train_lab.log"
