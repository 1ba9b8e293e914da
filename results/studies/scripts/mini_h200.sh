#!/usr/bin/env bash
# The mini baselines study on one lent H200 (device kind nvidia-h200), in back-to-back commands of
# one lease (the study folder is git-ignored, so it stays on the machine between them):
#   bash results/studies/scripts/mini_h200.sh pretrain     carry: [.carry, .whl]
#   bash results/studies/scripts/mini_h200.sh finetune     (resumes whatever the first left)
#   BUDGET=26214400 MICRO_BATCH=8 TASKS=pos_brown,news_retrieval bash ... all 530   (one command)
# Code: .carry/snap/src, `git archive HEAD src` of the commit named in the results. Data carried:
# .carry/study/corpus_gpt2.bin (the offline corpus, GPT-2 BPE, first 8,189,985 tokens of
# `aveyb tokenizer encode --source corpus --max-tokens 8000000`), the GPT-2 BPE files, and the
# task folders in tasks.tar.xz. Wheels: seqeval, pytrec-eval-terrier.
set -uo pipefail
stage=${1:?pretrain, finetune or all}
limit=${2:-545}
here=$PWD
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$here/.carry/snap/src:/tmp/site PYTHONUNBUFFERED=1 OMP_NUM_THREADS=3 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
data=/tmp/aveyb-data
[ -d $data/tasks ] || { mkdir -p $data && tar -xJf .carry/study/tasks.tar.xz -C $data; }
study=$here/runs/mini_baselines
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
start=$(date +%s)
timeout -s TERM -k 40 $limit python3 -m aveyb.cli study run baselines --scale mini --output-dir $study \
  --data-dir $data --jobs-per-gpu 5 --variants avey-b,bert,roberta,modernbert,neobert $( [ $stage = all ] || echo --stage $stage ) \
  --token-budget ${BUDGET:-65536000} --set pretrain.micro_batch_size=${MICRO_BATCH:-16} \
  --tasks ${TASKS:-sentiment_movies,trec_qc,ner_wnut,pos_brown,news_cloze,news_retrieval} --seeds 0,1,2 \
  --set "finetune.lrs=[3.0e-4]" --set finetune.settings.max_steps=300 \
  --set finetune.settings.max_eval_examples=500 \
  --set pretrain.checkpoint_every=100 --set pretrain.eval_every=100 \
  --set "pretrain.sources=[{type: tokens, path: $here/.carry/study/corpus_gpt2.bin}]" \
  --set "pretrain.tokenizer=gpt2-bpe:$here/.carry/study/gpt2-bpe" 2>&1 | tail -40
echo "stage $stage: exit ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s"
python3 -m aveyb.cli study report $study > /dev/null 2>&1
mkdir -p $OUT/report
cp $study/report/* $OUT/report/ 2>/dev/null
tar -czf $OUT/records.tar.gz -C $study study.yaml finetune jobs $(cd $study && ls -d pretrain/*/metrics.jsonl pretrain/*/config.json pretrain/*/done.json 2>/dev/null) 2>/dev/null
tar -czf $OUT/logs.tar.gz -C $study logs
ls -la $OUT $OUT/report
