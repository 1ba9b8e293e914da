#!/usr/bin/env bash
# v11: every GPU test of the repository at the start of the session (checks the 3b9bca6 test refactor), the config tests
# (tests/test_kernel_configs_gpu.py) first.   bash results/bench/scripts/h100_v11_a.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 330 python3 -m pytest -q -rs -m gpu tests/test_kernel_configs_gpu.py -p no:cacheprovider \
  > "$OUT/config_tests.log" 2>&1
tail -1 "$OUT/config_tests.log"; grep -E "^(FAILED|ERROR)" "$OUT/config_tests.log" | cut -c1-300 | head -20
AVEYB_AUTOTUNE=0 timeout 230 python3 -m pytest -q -m gpu tests/ --ignore=tests/test_kernel_configs_gpu.py \
  -p no:cacheprovider > "$OUT/gpu_tests.log" 2>&1
tail -1 "$OUT/gpu_tests.log"; grep -E "^(FAILED|ERROR)" "$OUT/gpu_tests.log" | head -20
