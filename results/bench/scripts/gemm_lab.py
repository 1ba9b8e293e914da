"""GEMM lab: the enricher (three modes) and fuser kernels against cuBLAS at the base model's shapes.

Usage on a GPU: PYTHONPATH=src python3 results/bench/scripts/gemm_lab.py [ROWS ...] (default 16384 262144).
Prints per-kernel time and TFLOP/s (triton.testing.do_bench, median) and each enricher mode's
error against the fp32 exact-GELU reference and against the fp32 tanh-GELU one.
"""
import json
import os
import sys
import traceback

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

from aveyb.kernels import gemm

torch.manual_seed(0)
dev, dt = torch.device("cuda"), torch.bfloat16
d, E = 768, 4
res, errs = [], []
for R in [int(v) for v in (sys.argv[1:] or ["16384", "262144"])]:
    x = torch.randn(R, d, device=dev, dtype=dt)
    we = (torch.randn(E * d, d, device=dev) / 28).to(dt)
    be = torch.randn(E * d, device=dev, dtype=dt) * 0.1
    wf = (torch.randn(d, (E - 1) * d, device=dev) / 48).to(dt)
    bf = torch.randn(d, device=dev, dtype=dt) * 0.1
    alpha = torch.tensor(0.9, device=dev, dtype=dt)
    mask = torch.rand(R, device=dev) > 0.1
    st = gemm.row_stats(x)
    fl_e, fl_f = 2 * R * d * E * d, 2 * R * d * (E - 1) * d
    add = lambda name, t, fl: res.append((name, R, t, fl / t / 1e9 if fl else 0.0))
    add("cublas mm (no bias)", do_bench(lambda: x @ we.T), fl_e)
    add("cublas linear+bias", do_bench(lambda: F.linear(x, we, be)), fl_e)
    add("cublasLt bias+gelu", do_bench(lambda: torch._addmm_activation(be, x, we.T, use_gelu=True)), fl_e)
    add("linear then gelu", do_bench(lambda: F.gelu(F.linear(x, we, be))), fl_e)
    xh = torch.empty_like(x)
    add("rms apply pass", do_bench(lambda: gemm._rms_apply_kernel[(triton.cdiv(R, 32),)](
        x, st.parts, xh, R, d, st.count, st.parts.shape[1], 1e-6, BLOCK_R=32, BLOCK_D=256, num_warps=4)), 0)
    f0 = torch.randn(R, (E - 1) * d, device=dev, dtype=dt)
    add("cublas fuser linear", do_bench(lambda: F.linear(f0, wf, bf)), fl_f)
    xf = x.float()
    pre = (xf * torch.rsqrt((xf * xf).mean(-1, keepdim=True) + 1e-6)) @ we.float().T + be.float()
    refs = {"erf": F.gelu(pre), "tanh": F.gelu(pre, approximate="tanh")}
    for r in refs.values():
        r[:, :d] *= mask[:, None]
    xn = (xf * torch.rsqrt((xf * xf).mean(-1, keepdim=True) + 1e-6))
    lt = torch._addmm_activation(be.float(), xn, we.float().T, use_gelu=True)  # which GELU form cuBLASLt uses
    for k, v in {"erf": F.gelu(pre), "tanh": F.gelu(pre, approximate="tanh")}.items():
        print(R, "fp32 cuBLASLt GELU vs %s: max abs %.2e" % (k, float((lt - v).abs().max())), flush=True)
    for mode in gemm.ENRICHER_MODES:
        os.environ["AVEYB_ENRICHER"] = mode
        try:
            z = gemm.enrich(x, st, we, be, mask, 0, 1e-6)
            add(f"enrich {mode}", do_bench(lambda: gemm.enrich(x, st, we, be, mask, 0, 1e-6)), fl_e)
            e = {k: float((z.float() - v).norm() / v.norm()) for k, v in refs.items()}
            errs.append((mode, R, e))
            print(R, mode, "errs vs erf %.2e vs tanh %.2e" % (e["erf"], e["tanh"]), flush=True)
        except Exception:
            traceback.print_exc(limit=4)
    os.environ["AVEYB_ENRICHER"] = "tma"
    z = gemm.enrich(x, st, we, be, mask, 0, 1e-6)
    add("fuser tma", do_bench(lambda: gemm.fuse(z[:, d:], wf, bf, x, alpha)), fl_f)
    print(R, "enricher cfg", gemm._enricher_tma_kernel.best_config, "| fuser cfg", gemm._fuser_tma_kernel.best_config)
    # bf16 rounding of the exact result, for scale
    print(R, "bf16 rounding of the exact Z: %.2e" % float((refs["erf"].bfloat16().float() - refs["erf"]).norm()
                                                          / refs["erf"].norm()))
print("%-24s %8s %10s %8s" % ("kernel", "rows", "ms", "TFLOP/s"))
for name, R, t, tf in res:
    print("%-24s %8d %10.4f %8.1f" % (name, R, t, tf))
json.dump({"times": res, "errors": errs}, open(os.environ.get("OUT", "/tmp") + "/lab.json", "w"), indent=1)
