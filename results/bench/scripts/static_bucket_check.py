"""The static mix's autotuned config per split-count bucket, in one process: 8 x 2,048 first, then
8 x 32,768 (bf16, d = 768, S = 256). Usage: PYTHONPATH=src python3 results/bench/scripts/static_bucket_check.py"""
import torch
from triton.testing import do_bench

from aveyb.kernels import layers

torch.manual_seed(0)
S, d, E = 256, 768, 4
p = (torch.randn(S, S, device="cuda") / 16).to(torch.bfloat16)
for rows in (16384, 262144):
    z = torch.randn(rows // S, S, E * d, device="cuda", dtype=torch.bfloat16)
    layers.mix_and_gate(z, None, "static", d, spatial_proj=p)
    us = do_bench(lambda: layers.mix_and_gate(z, None, "static", d, spatial_proj=p), warmup=20, rep=100) * 1e3
    print(f"{rows:7d} rows: {us:7.1f} us, config {layers._static_mix_kernel.best_config}")
print({str(k): str(v) for k, v in layers._static_mix_kernel.cache.items()})
