#!/usr/bin/env bash
# Device run 1 (nvidia-h100-x1): tokens/s and a short loss curve of the `mini` preset, bf16.
# Needs .carry/pretrain/{corpus_gpt2.bin,gpt2-bpe/} (see results/pretrain/README.md).
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi -L; python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name(0))"
COMMON=(--set "model_overrides={kernel_backend: torch}" --set progress_bar=false --set log_every=10
        --set checkpoint_every=100000 --set keep_checkpoints=1
        --set "sources=[{type: tokens, path: .carry/pretrain/corpus_gpt2.bin}]"
        --set tokenizer=gpt2-bpe:.carry/pretrain/gpt2-bpe ${EXTRA:-})
timeout 200 python3 -m aveyb.pretrain --config mini --output-dir /tmp/mini_eager --max-steps "${STEPS:-200}" \
  --set eval_every=100 "${COMMON[@]}" 2>&1 | tee "$OUT/mini_eager.log" | grep -v "^\s*$" | tail -4
cp /tmp/mini_eager/metrics.jsonl "$OUT/mini_eager_metrics.jsonl" 2>/dev/null
timeout 120 python3 -m aveyb.pretrain --config mini --output-dir /tmp/mini_compile --max-steps "${CSTEPS:-60}" \
  --set compile=true --set holdout_every=0 "${COMMON[@]}" 2>&1 | tee "$OUT/mini_compile.log" | grep -v "^\s*$" | tail -4
cp /tmp/mini_compile/metrics.jsonl "$OUT/mini_compile_metrics.jsonl" 2>/dev/null
python3 results/pretrain/scripts/summarize.py "$OUT/mini_summary.json" mini_bf16_eager=/tmp/mini_eager mini_bf16_compile=/tmp/mini_compile
