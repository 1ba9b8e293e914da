#!/usr/bin/env bash
# Issue 6, session 10: GPU parity at this commit, then the config lab (every layer kernel, explicit configs).
# bash results/bench/scripts/h100_config_lab.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import triton, torch; print('triton', triton.__version__, 'torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 200 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -p no:cacheprovider \
  > "$OUT/parity.log" 2>&1; tail -3 "$OUT/parity.log"
timeout 360 python3 results/bench/scripts/config_lab.py 16384 > "$OUT/config_lab.log" 2>&1; tail -25 "$OUT/config_lab.log"
