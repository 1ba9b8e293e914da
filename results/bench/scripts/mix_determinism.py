"""Are the in-place mix kernels deterministic, and how far is each launch from the reference?
PYTHONPATH=src python3 results/bench/scripts/mix_determinism.py OUT.json

For the dynamic and static mix (bf16, d = 768, E = 4, S = 256) at 32,768 and 262,144 rows: two
autotuned calls through ``mix_and_gate`` and two direct launches of the chosen config on copies of
one input, compared bitwise with each other; and each against ``reference_mix_and_gate`` in fp32
(on the bf16 activations), as max |difference| and max |difference| / (|reference| + 1).
"""

import json
import sys

import torch
import triton

from aveyb.kernels import layers
from aveyb.kernels.tuning import dot_precision
from aveyb.model import layers as ref

torch.manual_seed(0)
dev, dt = torch.device("cuda"), torch.bfloat16
d, E, S, EPS = 768, 4, 256, 1e-12
ZW = E * d
out = []
for R in (32768, 262144):
    M = R // S
    zpre = torch.randn(M, S, ZW, device=dev)
    z0 = torch.nn.functional.gelu(zpre).to(dt)
    p = (torch.randn(S, S, device=dev) / 16).to(dt)
    for kind in ("dynamic", "static"):
        proj = p if kind == "static" else None
        runs = []
        for _ in range(2):
            z = z0.clone()
            layers.mix_and_gate(z, None, kind, d, spatial_proj=proj)
            runs.append(z)
        kernel = layers._dynamic_mix_kernel if kind == "dynamic" else layers._static_mix_kernel
        c = kernel.best_config.all_kwargs()
        for _ in range(2):
            z = z0.clone()
            if kind == "dynamic":
                kernel.fn[(M * triton.cdiv(S, c["BLOCK_T"]),)](z, z, z, z, z, S, d, ZW, EPS, SAVE=False, HAS_MASK=False,
                                                             NORM=0, COUPLED=False, BLOCK_S=S, PREC=dot_precision(dt),
                                                             **c)
            else:
                grid = (M * triton.cdiv(S, c["BLOCK_T"]) * triton.cdiv(d, c["BLOCK_D"]),)
                kernel.fn[grid](z, p, z, S, d, ZW, min(triton.next_power_of_2(M), 1024), SAVE=False,
                                PREC=dot_precision(dt), **c)
            runs.append(z)
        # the reference on the same bf16 activations, in fp32
        zf = z0.float()
        u, g = zf[..., :d], zf[..., d:2 * d]
        mixed = ref.static_mix(u, p.float()) if kind == "static" else ref.dynamic_mix(u, None, "sum", EPS, None, None)
        want = g * mixed
        row = {"kind": kind, "rows": R, "config": str(kernel.best_config),
               "autotuned_pair_equal": bool(torch.equal(runs[0], runs[1])),
               "direct_pair_equal": bool(torch.equal(runs[2], runs[3])),
               "autotuned_vs_direct_max": float((runs[0].float() - runs[2].float()).abs().max())}
        for i, name in enumerate(("autotuned_1", "autotuned_2", "direct_1", "direct_2")):
            got = runs[i][..., d:2 * d].float()
            row[name + "_vs_ref_max"] = float((got - want).abs().max())
            row[name + "_vs_ref_rel"] = float(((got - want).abs() / (want.abs() + 1)).max())
        out.append(row)
        print(json.dumps(row), flush=True)
        del runs, zf, u, g, mixed, want
        torch.cuda.empty_cache()
json.dump({"gpu": torch.cuda.get_device_name(), "results": out}, open(sys.argv[1], "w"), indent=1)
