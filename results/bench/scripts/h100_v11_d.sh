#!/usr/bin/env bash
# v11: does the autotuner's choice explain the 2,048 spread between processes? e2e_config_lab.py in two
# processes: each autotunes, then times the whole graphed forward with every config of every autotuned
# kernel pinned in turn.   bash results/bench/scripts/h100_v11_d.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader | tee "$OUT/gpu.txt"
for i in 1 2; do
  timeout 280 python3 results/bench/scripts/e2e_config_lab.py "$OUT/e2e_config_lab_$i.json" 2048 > "$OUT/e2e_config_lab_$i.log" 2>&1
  grep -v "^captured" "$OUT/e2e_config_lab_$i.log" | tail -45 | cut -c1-160
done
