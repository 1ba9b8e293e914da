#!/usr/bin/env bash
# Issue 6, session 10: the warp-specialised Gluon enricher and fuser. Lab (agreement, times), full GPU
# parity, then the model at 2,048 (fused-graphs) with the Gluon fuser against the Triton one, alternately.
# bash results/bench/scripts/h100_ws2.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 150 python3 results/bench/scripts/ws_lab.py > "$OUT/ws_lab.log" 2>&1; echo "lab rc $?"; grep -v "^  " "$OUT/ws_lab.log" | tail -20
AVEYB_AUTOTUNE=0 timeout 240 python3 -m pytest -q -m gpu tests/test_kernels_parity.py -p no:cacheprovider \
  > "$OUT/parity.log" 2>&1; tail -2 "$OUT/parity.log"
for mode in ws tma ws tma; do
  AVEYB_FUSER=$mode timeout 100 python3 -m aveyb.cli bench --models avey-b --impls fused-graphs --modes inference \
    --lengths 2048 --repeats 4 --min-time 0.3 --time-budget 90 --out "$OUT/fuser_$mode.jsonl" 2>&1 | tail -1
done
for mode in ws tma; do python3 -c "import json; [print('fuser $mode', r['seq_len'], r['tokens_per_s'], r.get('note')) for r in map(json.loads, open('$OUT/fuser_$mode.jsonl'))]"; done
