"""What the 32,768-token target leaves room for: python results/bench/scripts/long_floor.py OUT.json

In one process on one GPU (batch 8, bf16, the base model `aveyb bench` builds):

* the fused forward at 8 x 32,768 (CUDA events over 4 calls) and its MaxSim and compression
  kernels' GPU time (torch.profiler);
* the layers' 60 GEMMs with cuBLAS and no epilogue at all -- enricher X (R, d) . W_e^T (d, E d)
  and fuser Z[:, d:] . W_f^T, back to back for the 30 layers, R = 262,144 rows (the sustained
  load of a long forward), and the same 30 layers run 16 times at R = 16,384 (8 x 2,048): the same
  work in short calls, to tell a per-row slowdown at long inputs from the GEMM's tile choice;
* a bandwidth floor for the mix: G <- G * U over (R, d) bf16 tensors (read U and G, write G), 30 times.

The floor of any implementation of this design is then at least the cuBLAS chain + MaxSim; the
target (3 x the quoted official 0.69M tokens/s, 2.07M) allows 262,144 / 2.07M = 126.6 ms.
"""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from aveyb.bench.runner import _encoder_call, build_model, random_ids, time_calls

LENGTH, BATCH, LAYERS, VOCAB = 32768, 8, 30, 50368
dev, dt = torch.device("cuda"), torch.bfloat16


def events(fn, calls: int = 4) -> list[float]:
    """CUDA-event times (ms) of ``calls`` calls after one untimed call (the bench's ``time_calls``)."""
    return time_calls(fn, dev, warmup=1, repeats=calls, min_time=float("inf"))[0]


def clocks() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,clocks.max.sm,power.draw", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception as err:  # noqa: BLE001 - informational only
        return f"n/a ({err})"


result = {"gpu": torch.cuda.get_device_name(), "length": LENGTH, "batch": BATCH}
module = build_model("avey-b", "fused", "base", VOCAB, dev, dt, LENGTH)
call = _encoder_call(module)
ids = random_ids(BATCH, LENGTH, VOCAB, "cuda")
with torch.inference_mode():
    for _ in range(2):
        call(ids)
    torch.cuda.synchronize()
    result["forward_ms"], result["forward_peak_gb"] = time_calls(lambda: call(ids), dev, warmup=1, repeats=4,
                                                                 min_time=float("inf"))
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        call(ids)
        torch.cuda.synchronize()
    kernels = {e.key: e.self_device_time_total / 1e3 for e in prof.key_averages()}
    result["kernels_ms"] = dict(sorted(kernels.items(), key=lambda kv: -kv[1])[:10])
    result["maxsim_ms"] = sum(v for k, v in kernels.items() if "maxsim" in k)
    result["compress_ms"] = sum(v for k, v in kernels.items() if "compress" in k)
    del module, call
    torch.cuda.empty_cache()

    d, e = 768, 4
    rows = BATCH * LENGTH
    x = torch.randn(rows, d, device=dev, dtype=dt)
    we = torch.randn(e * d, d, device=dev, dtype=dt) / 28
    wf = torch.randn(d, (e - 1) * d, device=dev, dtype=dt) / 48
    z = torch.empty(rows, e * d, device=dev, dtype=dt)
    y = torch.empty(rows, d, device=dev, dtype=dt)

    def chain(r: int, repeats: int):
        def run():
            for _ in range(repeats):
                for _ in range(LAYERS):
                    torch.mm(x[:r], we.t(), out=z[:r])
                    torch.mm(z[:r, d:], wf.t(), out=y[:r])
        return run

    result["clocks_before"] = clocks()
    result["cublas_chain_long_ms"] = events(chain(rows, 1))
    result["clocks_after_long"] = clocks()
    result["cublas_chain_short_x16_ms"] = events(chain(rows // 16, 16))
    u, g = z[:, :d].contiguous(), z[:, d:2 * d].contiguous()
    result["gate_floor_ms"] = events(lambda: [g.mul_(u) for _ in range(LAYERS)])
    flops = 2 * rows * LAYERS * (d * e * d + (e - 1) * d * d)
    result["cublas_chain_tflops"] = flops / (min(result["cublas_chain_long_ms"]) / 1e3) / 1e12

budget = rows / 2.07e6 * 1e3
floor = min(result["cublas_chain_long_ms"]) + result["maxsim_ms"]
result.update(budget_ms=budget, floor_gemm_maxsim_ms=floor, left_for_rest_ms=budget - floor)
with open(sys.argv[1], "w") as fh:
    json.dump(result, fh, indent=1)
print(json.dumps({k: v for k, v in result.items() if k != "kernels_ms"}, indent=1))
print(f"| forward (fused) | {min(result['forward_ms']):.1f} ms |")
print(f"| cuBLAS GEMM chain, 30 layers, R = {rows} | {min(result['cublas_chain_long_ms']):.1f} ms "
      f"({result['cublas_chain_tflops']:.0f} TFLOP/s) |")
print(f"| same work as 16 x R = {rows // 16} | {min(result['cublas_chain_short_x16_ms']):.1f} ms |")
print(f"| MaxSim kernel | {result['maxsim_ms']:.1f} ms |  compression {result['compress_ms']:.1f} ms |")
print(f"| G *= U, 30 times | {min(result['gate_floor_ms']):.1f} ms |")
print(f"| budget for 2.07M tok/s | {budget:.1f} ms | left after GEMMs + MaxSim: {budget - floor:.1f} ms |")
