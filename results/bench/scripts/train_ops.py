"""Which PyTorch ops the fused train step spends its GPU time in, with their input shapes:
python results/bench/scripts/train_ops.py [LENGTH] [BATCH]  (batch 16 x 2,048, sparse prediction).

The kernel table of ``aveyb.bench.profile`` names kernels only; this groups the same profile by
op and input shape, so the non-layer time (loss, embedding, optimiser, casts) can be attributed.
"""

from __future__ import annotations

import sys

import torch
from torch.profiler import ProfilerActivity, profile

from aveyb.bench.runner import Bench, Measurement

length = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 16
bench = Bench(repeats=1, warmup=2, sparse_prediction=True)
module, opt, _ = bench.build("avey-b", "fused", "train", length)
fn = bench._step(Measurement("avey-b", "fused", "train", batch, length), module, opt)
for _ in range(3):
    fn()
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
print(f"== fused train batch {batch} length {length}, sparse prediction: per 2 steps, by op and shape")
print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cuda_time_total", row_limit=90,
                                                         max_name_column_width=40, max_shapes_column_width=70))
print("== the same, by op only (CUDA total includes children: autograd nodes show their whole backward)")
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=70, max_name_column_width=60))
