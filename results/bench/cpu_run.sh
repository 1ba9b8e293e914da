#!/usr/bin/env bash
# The CPU bench of results/bench/cpu_<commit>.*: one process per (model, impl) group, all appending
# to one record file, each bounded by `timeout` so that a slow group cannot take the others' time.
# Run from the repository root: AVEYB_COMMIT=<commit> OUT=<dir> bash results/bench/cpu_run.sh
set -u
export PYTHONPATH=src
THREADS=${THREADS:-16}
OUT=${OUT:-runs/bench}
mkdir -p "$OUT"
REC="$OUT/cpu.jsonl"
{
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'isa', torch.backends.cpu.get_cpu_capability())"
  python3 -c "import onnxruntime, onnxscript; print('onnxruntime', onnxruntime.__version__)" 2>&1 | tail -1
  command -v g++ gcc cc || echo "no C/C++ compiler on PATH"
  lscpu | grep -E "^(Model name|CPU\(s\)|Thread|Core|Socket|NUMA node\(s\)|L3)" || true
  grep -o -w -E "avx512f|avx512_vnni|avx512_bf16|amx_tile|amx_int8|amx_bf16|avx_vnni" /proc/cpuinfo | sort -u | tr '\n' ' '; echo
} > "$OUT/env.txt" 2>&1
B="python3 -m aveyb.cli bench --device cpu --threads $THREADS --modes inference --batch 1 --dtype fp32 --preset base \
   --warmup 2 --repeats 5 --min-time 1.5 --out $REC"
timeout 60  $B --models avey-b --impls reference --lengths 512,2048,8192
timeout 60  $B --models avey-b --impls cpu-fast --lengths 512,2048,8192
timeout 45  $B --models avey-b --impls int8 --lengths 512,2048,8192
timeout 70  $B --models bert --impls sdpa --lengths 512,2048,8192
timeout 35  $B --models modernbert --impls sdpa --lengths 512,2048
timeout 100 $B --models avey-b --impls onnxruntime --lengths 512,2048,8192
timeout 100 $B --models avey-b --impls compiled --lengths 512,2048,8192
python3 -m aveyb.cli bench --report "$REC" --out "$REC" > /dev/null
