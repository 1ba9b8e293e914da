#!/usr/bin/env bash
# v10: every autotuning config of every autotuned kernel (tests/test_kernel_configs_gpu.py), then
# the rest of the GPU tests.   bash results/bench/scripts/h100_v10_a.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 330 python3 -m pytest -q -rs -m gpu tests/test_kernel_configs_gpu.py -p no:cacheprovider \
  > "$OUT/config_tests.log" 2>&1
tail -1 "$OUT/config_tests.log"; grep -E "^(FAILED|ERROR|SKIPPED)" "$OUT/config_tests.log" | cut -c1-300 | head -40
AVEYB_AUTOTUNE=0 timeout 230 python3 -m pytest -q -m gpu tests/ --ignore=tests/test_kernel_configs_gpu.py \
  -p no:cacheprovider > "$OUT/gpu_tests.log" 2>&1
tail -1 "$OUT/gpu_tests.log"; grep -E "^(FAILED|ERROR)" "$OUT/gpu_tests.log" | head -20
