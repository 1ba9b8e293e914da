"""Which launch configs of the dynamic mix forward repeat bitwise, how far each is from the fp32
reference, and how fast: PYTHONPATH=src python3 results/bench/scripts/dynamic_config_check.py OUT.json [ROWS]

Each config runs three times on copies of one input (bf16, d = 768, E = 4, S = 256, ROWS rows,
default 32,768), then is timed with triton.testing.do_bench.
"""

import json
import sys

import torch
import triton
from triton.testing import do_bench

from aveyb.kernels import layers
from aveyb.model import layers as ref

torch.manual_seed(0)
dev, dt = torch.device("cuda"), torch.bfloat16
d, E, S, EPS = 768, 4, 256, 1e-12
R = int(sys.argv[2]) if len(sys.argv) > 2 else 32768
ZW, M = E * d, R // S
z0 = torch.nn.functional.gelu(torch.randn(M, S, ZW, device=dev)).to(dt)
zf = z0.float()
want = zf[..., d:2 * d] * ref.dynamic_mix(zf[..., :d], None, "sum", EPS, None, None)
out = []
CONFIGS = [(128, 64, 8, 3), (128, 64, 8, 2), (128, 64, 8, 1), (64, 64, 4, 2), (64, 64, 4, 1), (64, 64, 8, 1),
           (32, 64, 4, 2), (32, 64, 4, 1), (16, 32, 4, 1), (128, 128, 8, 2), (128, 128, 8, 1), (128, 32, 8, 1),
           (64, 128, 8, 1), (64, 32, 4, 1), (32, 32, 4, 2), (16, 64, 4, 2)]
for bt, bd, w, st in CONFIGS:
    def launch(z, bt=bt, bd=bd, w=w, st=st):
        layers._dynamic_mix_kernel.fn[(M * triton.cdiv(S, bt),)](
            z, z, z, z, z, S, d, ZW, EPS, SAVE=False, HAS_MASK=False, NORM=0, COUPLED=False, BLOCK_S=S,
            PREC="tf32", BLOCK_T=bt, BLOCK_D=bd, num_warps=w, num_stages=st)
    runs = []
    for _ in range(3):
        z = z0.clone()
        launch(z)
        runs.append(z[..., d:2 * d].float())
    zt = z0.clone()
    us = do_bench(lambda: launch(zt), warmup=5, rep=40) * 1e3
    diff = (runs[0] - want).abs()
    row = {"config": f"T{bt} D{bd} w{w} s{st}", "repeats_equal": all(torch.equal(runs[0], r) for r in runs[1:]),
           "spread_max": max(float((runs[0] - r).abs().max()) for r in runs[1:]),
           "vs_ref_max": float(diff.max()), "vs_ref_rel": float((diff / (want.abs() + 1)).max()),
           "elements_off_by_1e-2": int((diff > 1e-2).sum()), "us": us}
    out.append(row)
    print(json.dumps(row), flush=True)
json.dump({"gpu": torch.cuda.get_device_name(), "rows": R, "triton": triton.__version__, "results": out}, open(sys.argv[1], "w"), indent=1)
