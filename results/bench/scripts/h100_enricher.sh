#!/usr/bin/env bash
# Enricher modes (AVEYB_ENRICHER=tma | tma-tanh | cublas): GEMM lab, GPU parity of the modes,
# end-to-end graphed forward per mode next to official-style, and a kernel profile.
# bash results/bench/scripts/h100_enricher.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader
timeout 70 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -k "enricher_modes" -p no:cacheprovider \
  > "$OUT/parity_enricher.log" 2>&1; tail -3 "$OUT/parity_enricher.log"
timeout 140 python3 results/bench/scripts/gemm_lab.py 16384 262144 > "$OUT/lab.log" 2>&1; tail -30 "$OUT/lab.log"
for mode in tma tma-tanh cublas; do
  AVEYB_ENRICHER=$mode timeout 100 python3 -m aveyb.cli bench --models avey-b --impls fused-graphs \
    --modes inference --lengths 2048,32768 --repeats 5 --min-time 0.3 --out "$OUT/e2e.jsonl" 2>&1 | tail -4
done
timeout 90 python3 -m aveyb.cli bench --models avey-b --impls official-style --modes inference \
  --lengths 2048,32768 --repeats 5 --min-time 0.3 --out "$OUT/e2e.jsonl" 2>&1 | tail -4
AVEYB_ENRICHER=cublas timeout 60 python3 -m aveyb.bench.profile --impl fused --length 2048 > "$OUT/profile_cublas.txt" 2>&1
head -30 "$OUT/profile_cublas.txt" | cut -c1-60,100-200
python3 -m aveyb.cli bench --report "$OUT/e2e.jsonl" 2>&1 | tail -12
