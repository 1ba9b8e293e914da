#!/usr/bin/env bash
# The fused path in real pretraining (nvidia-h200-x2): `mini`, 20 steps, 65,536 tokens per step,
# micro-batch 8 (16,384 rows per layer). fp32 (TF32 off): reference layers (kernel_backend torch)
# against the fused path (ranker kernels + hand-written training layer,
# kernel_options.train_layer=triton; the records ran it as AVEYB_TRAIN_LAYER=triton, before kernel_options)
# on 1 GPU, 2 GPUs DDP and 2 GPUs FSDP2 (when the records ran, FSDP2's hooks made the layers run
# as reference modules; they now run fused there too); then bf16
# autocast, reference against fused on 1 GPU (losses and tokens/s).
# bash results/pretrain/scripts/gpu_fused_equivalence.sh      (carry: [.carry])
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi -L
COMMON=(--config mini --max-steps 20 --set progress_bar=false
        --set log_every=1 --set holdout_every=0 --set checkpoint_every=100000 --set keep_checkpoints=1
        --set global_batch_tokens=65536 --set micro_batch_size=8
        --set "sources=[{type: tokens, path: .carry/pretrain/corpus_gpt2.bin}]"
        --set tokenizer=gpt2-bpe:.carry/pretrain/gpt2-bpe --set "kernel_options={train_layer: triton}")
REF=(--set "model_overrides={kernel_backend: torch}")
FP32=(--set precision=fp32 --set tf32=false)
run1() { timeout 120 python3 -m aveyb.pretrain --output-dir "$1" "${@:2}" 2>&1 | grep -v "^\s*$" | tail -1; }
run2() { timeout 120 torchrun --nproc-per-node 2 --master-port 29611 -m aveyb.pretrain --output-dir "$1" "${@:2}" 2>&1 | grep -v "^\s*$" | tail -1; }
run1 /tmp/fp32_ref "${COMMON[@]}" "${FP32[@]}" "${REF[@]}"
run1 /tmp/fp32_fused "${COMMON[@]}" "${FP32[@]}"
run2 /tmp/fp32_fused_ddp "${COMMON[@]}" "${FP32[@]}"
run2 /tmp/fp32_fused_fsdp2 "${COMMON[@]}" "${FP32[@]}" --set distributed=fsdp2
run1 /tmp/bf16_ref "${COMMON[@]}" "${REF[@]}"
run1 /tmp/bf16_fused "${COMMON[@]}"
python3 results/pretrain/scripts/compare_losses.py "$OUT/fused_fp32.json" fp32_ref=/tmp/fp32_ref \
  fp32_fused=/tmp/fp32_fused fp32_fused_ddp=/tmp/fp32_fused_ddp fp32_fused_fsdp2=/tmp/fp32_fused_fsdp2
python3 results/pretrain/scripts/compare_losses.py "$OUT/fused_bf16.json" bf16_ref=/tmp/bf16_ref bf16_fused=/tmp/bf16_fused
