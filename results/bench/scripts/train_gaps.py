"""Where the GPU waits on the host in the fused sparse train step (batch 16 x 2,048):
python results/bench/scripts/train_gaps.py OUT.json

Times the step with CUDA events (as ``aveyb bench`` does), then traces 2 steps with torch.profiler
and lists the idle intervals between consecutive GPU kernels: their total per step, and the
largest ones with the kernels on either side. The profiler's own host overhead lengthens the
gaps, so the trace gives where they are; the events give how long the step takes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile

from aveyb.bench.runner import Bench, Measurement, time_calls

BATCH, LENGTH, VOCAB = 16, 2048, 50368
dev = torch.device("cuda")
bench = Bench(repeats=6, warmup=3, vocab_size=VOCAB, sparse_prediction=True)
module, opt, _ = bench.build("avey-b", "fused", "train", LENGTH)
step = bench._step(Measurement("avey-b", "fused", "train", BATCH, LENGTH), module, opt)
times, peak = time_calls(step, dev, warmup=3, repeats=6, min_time=float("inf"))
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    for _ in range(2):
        step()
    torch.cuda.synchronize()
path = os.path.join(tempfile.mkdtemp(), "trace.json")
prof.export_chrome_trace(path)
events = json.load(open(path))["traceEvents"]
kernels = sorted((e for e in events if e.get("cat") == "kernel"), key=lambda e: e["ts"])
busy = sum(e["dur"] for e in kernels) / 1e3 / 2
gaps = []
for a, b in zip(kernels, kernels[1:]):
    gap = b["ts"] - (a["ts"] + a["dur"])
    if gap > 5:
        gaps.append((gap, a["name"][:60], b["name"][:60]))
span = (kernels[-1]["ts"] + kernels[-1]["dur"] - kernels[0]["ts"]) / 1e3 / 2
by_next: dict[str, float] = {}
for gap, _, after in gaps:
    by_next[after] = by_next.get(after, 0.0) + gap / 1e3 / 2
result = {"gpu": torch.cuda.get_device_name(), "step_ms": times, "peak_gb": peak, "traced_span_ms": span,
          "traced_busy_ms": busy, "gaps_over_5us_ms": sum(g for g, _, _ in gaps) / 1e3 / 2,
          "gaps_by_next_kernel_ms": dict(sorted(by_next.items(), key=lambda kv: -kv[1])[:15]),
          "largest_gaps_us": [list(g) for g in sorted(gaps, reverse=True)[:20]]}
with open(sys.argv[1], "w") as fh:
    json.dump(result, fh, indent=1)
print(f"step (events): {min(times):.1f} ms; traced span {span:.1f} ms per step, kernels busy {busy:.1f} ms, "
      f"gaps > 5 us {result['gaps_over_5us_ms']:.1f} ms")
for name, ms in result["gaps_by_next_kernel_ms"].items():
    print(f"  {ms:6.2f} ms of gaps before {name}")
for gap, before, after in result["largest_gaps_us"][:12]:
    print(f"  {gap:8.0f} us  {before} -> {after}")
