#!/usr/bin/env bash
# Device run 2 (nvidia-h200-x2): 2 GPUs vs 1 GPU with the same global batch give the same losses.
# fp32 (TF32 off) for a tight comparison: 1 GPU, 2 GPUs DDP, 2 GPUs FSDP2; then bf16 1 vs 2 GPUs DDP.
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.device_count(), 'GPUs')"
STEPS=${STEPS:-20}
COMMON=(--config mini --max-steps "$STEPS" --set "model_overrides={kernel_backend: torch}" --set progress_bar=false
        --set log_every=1 --set holdout_every=0 --set checkpoint_every=100000 --set keep_checkpoints=1
        --set global_batch_tokens=65536 --set micro_batch_size=8
        --set "sources=[{type: tokens, path: .carry/pretrain/corpus_gpt2.bin}]"
        --set tokenizer=gpt2-bpe:.carry/pretrain/gpt2-bpe ${EXTRA:-})
FP32=(--set precision=fp32 --set tf32=false)
run1() { timeout 150 python3 -m aveyb.pretrain --output-dir "$1" "${@:2}" 2>&1 | grep -v "^\s*$" | tail -2; }
run2() { timeout 150 torchrun --nproc-per-node 2 --master-port 29611 -m aveyb.pretrain --output-dir "$1" "${@:2}" 2>&1 | grep -v "^\s*$" | tail -2; }
run1 /tmp/fp32_1gpu "${COMMON[@]}" "${FP32[@]}"
run2 /tmp/fp32_2gpu_ddp "${COMMON[@]}" "${FP32[@]}"
run2 /tmp/fp32_2gpu_fsdp2 "${COMMON[@]}" "${FP32[@]}" --set distributed=fsdp2
run1 /tmp/bf16_1gpu "${COMMON[@]}"
run2 /tmp/bf16_2gpu_ddp "${COMMON[@]}"
python3 results/pretrain/scripts/compare_losses.py "$OUT/ddp_fp32.json" fp32_1gpu=/tmp/fp32_1gpu \
  fp32_2gpu_ddp=/tmp/fp32_2gpu_ddp fp32_2gpu_fsdp2=/tmp/fp32_2gpu_fsdp2
python3 results/pretrain/scripts/compare_losses.py "$OUT/ddp_bf16.json" bf16_1gpu=/tmp/bf16_1gpu bf16_2gpu_ddp=/tmp/bf16_2gpu_ddp
