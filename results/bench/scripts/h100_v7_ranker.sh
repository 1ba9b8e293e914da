#!/usr/bin/env bash
# v7: the flat-loop MaxSim kernel. Ranker parity tests, the MaxSim lab (new kernel against the
# previous one, carried as .carry/old_ranker.py = `git show 6e68d95:src/aveyb/kernels/ranker.py`),
# then inference at 2,048 / 32,768 (batch 8, bf16): fused-graphs, fused, official-style.
# bash results/bench/scripts/h100_v7_ranker.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
AVEYB_AUTOTUNE=0 timeout 200 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -k "rank or select or maxsim" \
  -p no:cacheprovider > "$OUT/parity.log" 2>&1; tail -1 "$OUT/parity.log"
timeout 200 python3 results/bench/scripts/maxsim_lab.py "$OUT/maxsim_lab.json" .carry/old_ranker.py > "$OUT/maxsim_lab.log" 2>&1
tail -7 "$OUT/maxsim_lab.log"
timeout 240 python3 -m aveyb.cli bench --models avey-b --impls fused-graphs,fused,official-style --modes inference \
  --lengths 2048,32768 --repeats 4 --min-time 0.3 --out "$OUT/inference.jsonl" 2>&1 | tail -1
python3 -m aveyb.cli bench --report "$OUT/inference.jsonl" 2>&1 | tail -8
