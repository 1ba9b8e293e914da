#!/usr/bin/env bash
# v6 final, part B: train step (batch 16, bf16 autocast, AdamW) at 512, 1,024 and 2,048 tokens:
# the hand-written training layer (AVEYB_TRAIN_LAYER=triton) and the compiled reference layer
# (=compile), both with sparse prediction; triton dense and official-style; in one run.
# bash results/bench/scripts/h100_v6_final_b.sh COMMIT
export PYTHONPATH=src PYTHONUNBUFFERED=1 AVEYB_COMMIT=$1
OUT=${OUT:-results/bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
B="python3 -m aveyb.cli bench --models avey-b --modes train --train-lengths 512,1024,2048 --train-batch 16 --repeats 4 --min-time 0.3"
AVEYB_TRAIN_LAYER=triton timeout 110 $B --impls fused --sparse-prediction --out "$OUT/train_triton_sparse.jsonl" 2>&1 | tail -1
AVEYB_TRAIN_LAYER=compile timeout 170 $B --impls fused --sparse-prediction --out "$OUT/train_compile_sparse.jsonl" 2>&1 | tail -1
AVEYB_TRAIN_LAYER=triton timeout 150 $B --impls fused,official-style --out "$OUT/train_triton_dense.jsonl" 2>&1 | tail -1
python3 -c "
import json
for f in ('train_triton_sparse', 'train_compile_sparse', 'train_triton_dense'):
    for l in open('$OUT/' + f + '.jsonl'):
        r = json.loads(l); print(f, r['impl'], r['seq_len'], r['status'], round(r.get('tokens_per_s') or 0), r.get('peak_mem_gb'), r['note'][-40:])"
