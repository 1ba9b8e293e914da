"""What the training target (>= 580K tokens/s at batch 16 x 2,048, i.e. <= 56.5 ms per step) leaves
room for: python results/bench/scripts/train_floor.py OUT.json

In one process on one GPU, the fused train step as ``aveyb bench`` times it (fp32 weights, bf16
autocast, fused AdamW, sparse prediction):

* the step (CUDA events over 6 calls after the untimed ones) and its GPU time by kernel class
  (torch.profiler over 2 steps): GEMMs, the contextualizers' mix kernels (forward and backward),
  the layers' other Triton passes (RMSNorm, activation, gate, residual, cast), the optimiser, the
  ranker (MaxSim, compression), the loss, everything else;
* the layers' six GEMMs per layer (enricher and fuser forward; dF, dW_f, dW_e | db_e, dX backward)
  with cuBLAS and no epilogue, back to back for the 30 layers, at the step's 32,768 rows and the
  step's output dtypes (weight gradients in fp32 as ``product_fp32`` gives them);
* the fused AdamW step alone on the model's parameters.

Then: budget - (bare GEMM chain + everything outside the layers as measured) = what is left for
every layer pass that is not a GEMM, forward and backward, against what those passes take now.
"""

from __future__ import annotations

import json
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from aveyb.bench.runner import Bench, Measurement, time_calls
from aveyb.kernels.tuning import product_fp32

BATCH, LENGTH, LAYERS, VOCAB = 16, 2048, 30, 50368
BUDGET_MS = BATCH * LENGTH / 580e3 * 1e3
dev, dt = torch.device("cuda"), torch.bfloat16
CLASSES = (  # first match wins
    ("mix", ("_static_mix", "_dynamic_mix", "_dynamic_scores")),
    ("layer_elementwise", ("_rms_", "_act_forward", "_gate_backward", "_residual", "_cast_colsum")),
    ("ranker", ("maxsim", "compress")),
    ("loss", ("_ce_",)),
    ("optimizer", ("adam", "multi_tensor_apply")),
    ("gemm", ("nvjet", "gemm", "cutlass", "xmma", "sm90_", "cublas")),
)


def kernel_class(name: str) -> str:
    low = name.lower()
    for label, keys in CLASSES:
        if any(k in low for k in keys):
            return label
    return "other"


result = {"gpu": torch.cuda.get_device_name(), "batch": BATCH, "length": LENGTH, "budget_ms": BUDGET_MS}
bench = Bench(repeats=6, warmup=3, vocab_size=VOCAB, sparse_prediction=True)
module, opt, _ = bench.build("avey-b", "fused", "train", LENGTH)
step = bench._step(Measurement("avey-b", "fused", "train", BATCH, LENGTH), module, opt)
result["step_ms"], result["step_peak_gb"] = time_calls(step, dev, warmup=3, repeats=6, min_time=float("inf"))
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    for _ in range(2):
        step()
    torch.cuda.synchronize()
by_class: dict[str, float] = {}
kernels = {}
for e in prof.key_averages():
    ms = e.self_device_time_total / 1e3 / 2
    if ms <= 0:
        continue
    kernels[e.key] = ms
    by_class[kernel_class(e.key)] = by_class.get(kernel_class(e.key), 0.0) + ms
result["gpu_ms_by_class"] = dict(sorted(by_class.items(), key=lambda kv: -kv[1]))
result["gpu_ms_total"] = sum(by_class.values())
result["top_kernels_ms"] = dict(sorted(kernels.items(), key=lambda kv: -kv[1])[:25])

# AdamW alone, on the model's parameters with gradients in place
for p in module.parameters():
    p.grad = torch.randn_like(p) * 1e-3
result["adamw_ms"] = time_calls(opt.step, dev, warmup=2, repeats=6, min_time=float("inf"))[0]
n_params = sum(p.numel() for p in module.parameters())
result["params"] = n_params
del module, opt, step
torch.cuda.empty_cache()

# the layers' GEMMs, bare cuBLAS, at the step's shapes
d, e = 768, 4
rows = BATCH * LENGTH
xn = torch.randn(rows, d + 8, device=dev, dtype=dt)  # [RMSNorm(x) | 1 | 0...], as training._rms_forward
we = torch.randn(e * d, d, device=dev, dtype=dt) / 28
wf = torch.randn(d, (e - 1) * d, device=dev, dtype=dt) / 48
z = torch.randn(rows, e * d, device=dev, dtype=dt)
dzpre = torch.randn(rows, e * d, device=dev, dtype=dt)
dy = torch.randn(rows, d, device=dev, dtype=dt)
zpre, y, df, dxn = torch.empty_like(z), torch.empty_like(dy), torch.empty(rows, (e - 1) * d, device=dev, dtype=dt), \
    torch.empty_like(dy)


def chain():
    for _ in range(LAYERS):
        torch.mm(xn[:, :d], we.t(), out=zpre)  # enricher
        torch.mm(z[:, d:], wf.t(), out=y)  # fuser
        torch.mm(dy, wf, out=df)  # dF
        product_fp32(torch.mm, dy.t(), z[:, d:])  # dW_f
        product_fp32(torch.mm, dzpre.t(), xn)  # [dW_e | db_e]
        torch.mm(dzpre, we, out=dxn)  # dX through the enricher


result["cublas_layer_gemms_ms"] = time_calls(chain, dev, warmup=1, repeats=4, min_time=float("inf"))[0]
flops = 3 * 2 * rows * LAYERS * (d * e * d + (e - 1) * d * d)
result["cublas_layer_gemms_tflops"] = flops / (min(result["cublas_layer_gemms_ms"]) / 1e3) / 1e12

step_ms = min(result["step_ms"])
outside = sum(v for k, v in by_class.items() if k not in ("mix", "layer_elementwise", "gemm"))
gemm_bare = min(result["cublas_layer_gemms_ms"])
left = BUDGET_MS - gemm_bare - outside - (step_ms - result["gpu_ms_total"])
result.update(outside_layers_non_gemm_ms=outside, host_gap_ms=step_ms - result["gpu_ms_total"],
              left_for_layer_passes_ms=left,
              layer_passes_now_ms=by_class.get("mix", 0.0) + by_class.get("layer_elementwise", 0.0))
with open(sys.argv[1], "w") as fh:
    json.dump(result, fh, indent=1)
print(json.dumps({k: v for k, v in result.items() if k != "top_kernels_ms"}, indent=1))
print(f"| train step (events, best of 6) | {step_ms:.1f} ms ({BATCH * LENGTH / step_ms / 1e3:.3f}M tok/s) |")
for k, v in result["gpu_ms_by_class"].items():
    print(f"| GPU time: {k} | {v:.1f} ms |")
print(f"| the layers' GEMMs, bare cuBLAS | {gemm_bare:.1f} ms ({result['cublas_layer_gemms_tflops']:.0f} TFLOP/s) |")
print(f"| AdamW alone | {min(result['adamw_ms']):.2f} ms ({n_params / 1e6:.1f}M parameters) |")
print(f"| budget for 580K tok/s | {BUDGET_MS:.1f} ms | left for the layers' mix and elementwise passes: {left:.1f} ms "
      f"(now {result['layer_passes_now_ms']:.1f} ms) |")
