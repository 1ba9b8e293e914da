"""The GEMM modes at 8 x 32,768: python results/bench/scripts/long_modes.py OUT.json

In one process on one GPU (bf16, the base model `aveyb bench` builds, random ids):

* the fused forward under each (AVEYB_ENRICHER, AVEYB_FUSER) pair (CUDA events over 4 calls);
* 30 back-to-back calls at R = 262,144 rows of: the enricher product bare (cuBLAS, no bias, no
  activation), cuBLASLt with its bias + GELU epilogue, and ``gemm.enrich`` in each mode; the fuser
  product bare on the strided view Z[:, d:] and ``gemm.fuse`` in each mode.

The bare products are the floor no epilogue can beat; cuBLASLt's bias + GELU is what NVIDIA's own
fused epilogue costs on top of it.
"""

from __future__ import annotations

import json
import os
import sys

import torch

from aveyb.bench.runner import _encoder_call, build_model, random_ids, time_calls
from aveyb.kernels import gemm

LENGTH, BATCH, LAYERS, VOCAB = 32768, 8, 30, 50368
dev, dt = torch.device("cuda"), torch.bfloat16


def events(fn, calls: int = 4) -> list[float]:
    """CUDA-event times (ms) of ``calls`` calls after one untimed call (the bench's ``time_calls``)."""
    return time_calls(fn, dev, warmup=1, repeats=calls, min_time=float("inf"))[0]


def with_env(enricher: str, fuser: str):
    os.environ["AVEYB_ENRICHER"], os.environ["AVEYB_FUSER"] = enricher, fuser


result = {"gpu": torch.cuda.get_device_name(), "length": LENGTH, "batch": BATCH, "forward_ms": {}, "chain_ms": {}}
module = build_model("avey-b", "fused", "base", VOCAB, dev, dt, LENGTH)
call = _encoder_call(module)
ids = random_ids(BATCH, LENGTH, VOCAB, "cuda")
with torch.inference_mode():
    for enricher, fuser in (("ws", "tma"), ("cublas", "tma"), ("tma-tanh", "tma"), ("ws", "ws"), ("ws", "tma")):
        with_env(enricher, fuser)
        call(ids)
        result["forward_ms"][f"{enricher}/{fuser}"] = events(lambda: call(ids))
        print(f"forward {enricher}/{fuser}: {min(result['forward_ms'][f'{enricher}/{fuser}']):.1f} ms", flush=True)
    del module, call
    torch.cuda.empty_cache()

    d, e = 768, 4
    rows = BATCH * LENGTH
    x = torch.randn(rows, d, device=dev, dtype=dt)
    we = torch.randn(e * d, d, device=dev, dtype=dt) / 28
    be = torch.randn(e * d, device=dev, dtype=dt) / 10
    wf = torch.randn(d, (e - 1) * d, device=dev, dtype=dt) / 48
    bf = torch.randn(d, device=dev, dtype=dt) / 10
    alpha = torch.ones(1, device=dev, dtype=dt)
    z = torch.empty(rows, e * d, device=dev, dtype=dt)
    stats = gemm.row_stats(x)
    act_gelu = 0

    def repeat(fn):
        return lambda: [fn() for _ in range(LAYERS)]

    chains = {
        "enricher bare (cuBLAS)": lambda: torch.mm(x, we.t(), out=z),
        "enricher bias+GELU (cuBLASLt epilogue)": lambda: torch._addmm_activation(be, x, we.t(), use_gelu=True),
        "fuser bare (cuBLAS, strided view)": lambda: torch.mm(z[:, d:], wf.t()),
    }
    for mode in ("ws", "tma-tanh", "cublas"):
        chains[f"gemm.enrich {mode}"] = (lambda m: lambda: (with_env(m, "tma"), gemm.enrich(
            x, stats, we, be, None, act_gelu, 1e-12)))(mode)
    for mode in ("tma", "ws"):
        chains[f"gemm.fuse {mode}"] = (lambda m: lambda: (with_env("ws", m), gemm.fuse(z[:, d:], wf, bf, x, alpha)))(mode)
    for name, fn in chains.items():
        result["chain_ms"][name] = events(repeat(fn))
        flop = 2 * rows * d * (e * d if "enrich" in name else (e - 1) * d) * LAYERS
        print(f"| {name} x{LAYERS} | {min(result['chain_ms'][name]):.1f} ms | "
              f"{flop / min(result['chain_ms'][name]) / 1e9:.0f} TFLOP/s |", flush=True)
with open(sys.argv[1], "w") as fh:
    json.dump(result, fh, indent=1)
