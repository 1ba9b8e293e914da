#!/usr/bin/env bash
# Section 5's bf16 pair again, with the v10 kernels (every autotuning config tested, the dynamic mix's
# norms summed apart): `mini`, 20 steps, 65,536 tokens per step, micro-batch 8, bf16 autocast;
# reference layers (kernel_backend torch) against the fused path (kernel_options.train_layer=triton;
# the records ran it as AVEYB_TRAIN_LAYER=triton, before kernel_options), one GPU.
# bash results/pretrain/scripts/gpu_fused_bf16_recheck.sh      (carry: [.carry/pretrain])
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi -L
COMMON=(--config mini --max-steps 20 --set progress_bar=false
        --set log_every=1 --set holdout_every=0 --set checkpoint_every=100000 --set keep_checkpoints=1
        --set global_batch_tokens=65536 --set micro_batch_size=8
        --set "sources=[{type: tokens, path: .carry/pretrain/corpus_gpt2.bin}]"
        --set tokenizer=gpt2-bpe:.carry/pretrain/gpt2-bpe --set "kernel_options={train_layer: triton}")
run1() { timeout 200 python3 -m aveyb.pretrain --output-dir "$1" "${@:2}" 2>&1 | grep -v "^\s*$" | tail -1; }
run1 /tmp/bf16_ref "${COMMON[@]}" --set "model_overrides={kernel_backend: torch}"
run1 /tmp/bf16_fused "${COMMON[@]}"
python3 results/pretrain/scripts/compare_losses.py "$OUT/fused_bf16.json" bf16_ref=/tmp/bf16_ref bf16_fused=/tmp/bf16_fused
