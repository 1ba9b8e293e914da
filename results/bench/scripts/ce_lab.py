"""Masked-LM loss: the Triton cross-entropy against the reference (``F.cross_entropy`` on an fp32
copy of the logits), forward + backward, bf16 logits over the base vocabulary (50,368).

python results/bench/scripts/ce_lab.py OUT.json

Rows: 6,554 (batch 16 x 2,048 at 20% masking, sparse prediction) and 32,768 (dense prediction).
Prints a table last: median ms (triton.testing.do_bench) and the peak memory above the logits.
"""

from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F
import triton.testing

from aveyb.kernels.loss import cross_entropy

V = 50368
rows_out = []
for rows in (6554, 32768):
    gen = torch.Generator(device="cuda").manual_seed(rows)
    logits = (torch.randn(rows, V, generator=gen, device="cuda") * 2).bfloat16().requires_grad_(True)
    labels = torch.randint(0, V, (rows,), generator=gen, device="cuda")
    labels[::7] = -100
    impls = {"reference": lambda x, y: F.cross_entropy(x.float(), y, ignore_index=-100), "triton": cross_entropy}
    row = {"rows": rows, "vocab": V}
    outs = {}
    for name, fn in impls.items():
        def step(fn=fn, x=logits, y=labels):
            loss = fn(x, y)
            loss.backward()
            x.grad = None
            return loss
        outs[name] = (fn(logits, labels).item(), torch.autograd.grad(fn(logits, labels), logits)[0])
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        row[f"{name}_extra_peak_gb"] = (torch.cuda.max_memory_allocated() - base) / 1e9
        row[f"{name}_ms"] = triton.testing.do_bench(step, warmup=10, rep=100)
    (l_ref, g_ref), (l_tri, g_tri) = outs["reference"], outs["triton"]
    row["loss_rel_diff"] = abs(l_tri - l_ref) / abs(l_ref)
    row["grad_rel_diff"] = float((g_tri.float() - g_ref.float()).norm() / g_ref.float().norm())
    row["speedup"] = row["reference_ms"] / row["triton_ms"]
    rows_out.append(row)
    print(json.dumps(row), flush=True)
    del outs
    torch.cuda.empty_cache()
with open(sys.argv[1], "w") as fh:
    json.dump({"gpu": torch.cuda.get_device_name(), "rows": rows_out}, fh, indent=1)
print(f"{'rows':>6} {'ref ms':>8} {'triton ms':>10} {'speedup':>8} {'ref GB':>7} {'triton GB':>10}")
for r in rows_out:
    print(f"{r['rows']:>6} {r['reference_ms']:>8.2f} {r['triton_ms']:>10.2f} {r['speedup']:>8.2f} "
          f"{r['reference_extra_peak_gb']:>7.2f} {r['triton_extra_peak_gb']:>10.2f}")
