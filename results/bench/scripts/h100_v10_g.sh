#!/usr/bin/env bash
# v10: does the 2,048 throughput differ between processes because the autotuner chooses differently?
# Three processes of fused-graphs at 2,048 (batch 8, bf16), the first with official-style beside it;
# each record carries the configs its process chose (kernel_configs).
# bash results/bench/scripts/h100_v10_g.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
B="python3 -m aveyb.cli bench --models avey-b --modes inference --repeats 6 --min-time 0.5 --lengths 2048"
timeout 150 $B --impls fused-graphs,official-style --out "$OUT/process_1.jsonl" > /dev/null 2>&1
for i in 2 3; do timeout 90 $B --impls fused-graphs --out "$OUT/process_$i.jsonl" > /dev/null 2>&1; done
cat "$OUT"/process_[123].jsonl > "$OUT/processes.jsonl"; rm -f "$OUT"/process_*
python3 - "$OUT/processes.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
fused = [r for r in recs if r["impl"] == "fused-graphs"]
for r in recs:
    print(r["impl"], r["status"], round(r.get("tokens_per_s") or 0), [round(t, 2) for t in r["times_ms"]])
kernels = sorted({k for r in fused for k in r.get("kernel_configs", {})})
for k in kernels:
    picks = [r["kernel_configs"].get(k) for r in fused]
    print(("SAME " if all(p == picks[0] for p in picks) else "DIFF ") + k, *picks, sep="\n  ")
PY
