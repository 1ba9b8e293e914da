"""Where the Gluon enricher (ws) stops beating the Triton TMA one (tma-tanh):
python results/bench/scripts/enricher_crossover.py OUT.json [chains,forwards]

bf16, d = 768, E = 4, no mask. For each row count: 30 back-to-back ``gemm.enrich`` calls in each
mode, the two modes alternated over two rounds (each round: 4 timed calls, CUDA events; the
minimum is reported). Then the base model's fused forward at batch 8 and 8,192 / 16,384 / 32,768
tokens in each mode, alternated the same way. Sets ``gemm.WS_MAX_ROWS`` (``auto``).
"""

from __future__ import annotations

import json
import os
import sys

import torch

from aveyb.bench.runner import _encoder_call, build_model, random_ids, time_calls
from aveyb.kernels import gemm

dev, dt, LAYERS = torch.device("cuda"), torch.bfloat16, 30
MODES = ("ws", "tma-tanh")


def events(fn, calls: int = 4) -> float:
    """The fastest of ``calls`` CUDA-event-timed calls after one untimed call (``time_calls``)."""
    return min(time_calls(fn, dev, warmup=1, repeats=calls, min_time=float("inf"))[0])


def alternate(make) -> dict:
    out = {m: float("inf") for m in MODES}
    for _ in range(2):
        for mode in MODES:
            os.environ["AVEYB_ENRICHER"] = mode
            out[mode] = min(out[mode], events(make()))
    return out


PARTS = set((sys.argv[2] if len(sys.argv) > 2 else "chains,forwards").split(","))
result = {"gpu": torch.cuda.get_device_name(), "chain_ms": {}, "forward_ms": {}}
d, e = 768, 4
we = torch.randn(e * d, d, device=dev, dtype=dt) / 28
be = torch.randn(e * d, device=dev, dtype=dt) / 10
with torch.inference_mode():
    for rows in (16384, 32768, 65536, 131072, 262144, 786432) if "chains" in PARTS else ():
        x = torch.randn(rows, d, device=dev, dtype=dt)
        stats = gemm.row_stats(x)
        def chain():
            for _ in range(LAYERS):  # each output freed at once: 30 of them would not fit at 786,432 rows
                gemm.enrich(x, stats, we, be, None, 0, 1e-12)
        t = alternate(lambda: chain)
        result["chain_ms"][rows] = t
        print(f"| {rows:7d} rows | ws {t['ws']:8.2f} ms | tma-tanh {t['tma-tanh']:8.2f} ms | "
              f"ws / tma-tanh {t['ws'] / t['tma-tanh']:.3f} |", flush=True)
        del x, stats
    torch.cuda.empty_cache()
    module = build_model("avey-b", "fused", "base", 50368, dev, dt, 32768)
    call = _encoder_call(module)
    for length in (8192, 16384, 32768) if "forwards" in PARTS else ():
        ids = random_ids(8, length, 50368, "cuda")
        t = alternate(lambda: lambda: call(ids))
        result["forward_ms"][length] = t
        print(f"| forward 8 x {length:5d} | ws {t['ws']:8.2f} ms | tma-tanh {t['tma-tanh']:8.2f} ms | "
              f"ws / tma-tanh {t['ws'] / t['tma-tanh']:.3f} |", flush=True)
with open(sys.argv[1], "w") as fh:
    json.dump(result, fh, indent=1)
