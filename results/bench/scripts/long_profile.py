"""Where a long fused forward goes: python results/bench/scripts/long_profile.py OUT.json [LENGTHS].

For each length (batch 8, bf16, random ids, the model `aveyb bench` builds): the MaxSim
configuration the autotuner chose in this process, the GPU time per kernel of one forward
(torch.profiler, the top ten), and the forward's time over 4 calls (CUDA events).
"""

from __future__ import annotations

import json
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from aveyb.bench.runner import _encoder_call, build_model, random_ids, time_calls
from aveyb.kernels import ranker

lengths = [int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "32768,98304,131072").split(",")]
module = build_model("avey-b", "fused", "base", 50368, torch.device("cuda"), torch.bfloat16, max(lengths))
call = _encoder_call(module)
rows = []
for length in lengths:
    ids = random_ids(8, length, 50368, "cuda")
    with torch.inference_mode():
        for _ in range(2):
            call(ids)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            call(ids)
            torch.cuda.synchronize()
        times = time_calls(lambda: call(ids), torch.device("cuda"), warmup=0, repeats=4, min_time=float("inf"))[0]
    kernels = sorted(((e.key, e.self_device_time_total / 1e3, e.count) for e in prof.key_averages()),
                     key=lambda t: -t[1])[:10]
    row = {"length": length, "forward_ms": times, "kernels_ms": kernels,
           "maxsim_tma_configs": {str(k): str(v) for k, v in ranker._maxsim_tma_kernel.cache.items()}}
    rows.append(row)
    print(f"== {length}: forward {[round(t, 1) for t in times]} ms")
    for name, ms, n in kernels:
        print(f"   {ms:9.2f} ms  x{n:<4d} {name[:70]}")
with open(sys.argv[1], "w") as fh:
    json.dump({"gpu": torch.cuda.get_device_name(), "rows": rows}, fh, indent=1)
print(json.dumps(rows[-1]["maxsim_tma_configs"], indent=1))
