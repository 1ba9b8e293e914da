"""GEMM lab: the enricher and fuser kernels (pointer and TMA) against cuBLAS at the base model's shapes.

Usage on a GPU: PYTHONPATH=src python3 results/bench/scripts/gemm_lab.py [ROWS ...] (default 16384 262144).
Prints per-kernel time and TFLOP/s (triton.testing.do_bench, median) and each path's error against fp32.
"""
import os, json, torch, traceback
from aveyb.kernels import gemm
from triton.testing import do_bench
torch.manual_seed(0)
dev = torch.device("cuda"); dt = torch.bfloat16
d, E = 768, 4
res = []
import sys
for R in [int(v) for v in (sys.argv[1:] or ["16384", "262144"])]:
    x = torch.randn(R, d, device=dev, dtype=dt)
    we = (torch.randn(E*d, d, device=dev)/28).to(dt); be = torch.randn(E*d, device=dev, dtype=dt)*0.1
    wf = (torch.randn(d, (E-1)*d, device=dev)/48).to(dt); bf = torch.randn(d, device=dev, dtype=dt)*0.1
    alpha = torch.tensor(0.9, device=dev, dtype=dt)
    mask = torch.rand(R, device=dev) > 0.1
    st = gemm.row_stats(x)
    fl_e, fl_f = 2*R*d*E*d, 2*R*d*(E-1)*d
    t = do_bench(lambda: torch.nn.functional.linear(x, we, be)); res.append(("cublas enricher", R, t, fl_e/t/1e9))
    f0 = torch.randn(R, (E-1)*d, device=dev, dtype=dt)
    t = do_bench(lambda: torch.nn.functional.linear(f0, wf, bf)); res.append(("cublas fuser", R, t, fl_f/t/1e9))
    xf = x.float(); r = torch.rsqrt((xf*xf).mean(-1, keepdim=True) + 1e-6)
    zr = torch.nn.functional.gelu((xf*r) @ we.float().T + be.float()); zr[:, :d] *= mask[:, None]
    for tma in ("0", "1"):
        os.environ["AVEYB_GEMM_TMA"] = tma
        try:
            z = gemm.enrich(x, st, we, be, mask, 0, 1e-6)
            out, s2 = gemm.fuse(z[:, d:], wf, bf, x, alpha)
            t = do_bench(lambda: gemm.enrich(x, st, we, be, mask, 0, 1e-6)); res.append((f"enricher tma={tma}", R, t, fl_e/t/1e9))
            t = do_bench(lambda: gemm.fuse(z[:, d:], wf, bf, x, alpha)); res.append((f"fuser tma={tma}", R, t, fl_f/t/1e9))
            ke = gemm._enricher_tma_kernel if tma == "1" else gemm._enricher_kernel
            kf = gemm._fuser_tma_kernel if tma == "1" else gemm._fuser_kernel
            print(R, "tma", tma, "broken:", len(gemm._TMA_BROKEN), "enricher", ke.best_config, "| fuser", kf.best_config, flush=True)
            o_ref = z[:, d:].float() @ wf.float().T + bf.float() + 0.9 * xf
            e = lambda a, b: float((a.float()-b).norm()/b.norm())
            print(R, "tma", tma, "errs Z %.2e out %.2e ss %.2e" % (e(z, zr), e(out, o_ref), e(s2.parts[:, :s2.count].sum(1), (out.float()**2).sum(1))), flush=True)
        except Exception:
            traceback.print_exc(limit=3)
print("%-22s %8s %10s %8s" % ("kernel", "rows", "ms", "TFLOP/s"))
for name, R, t, tf in res:
    print("%-22s %8d %10.4f %8.1f" % (name, R, t, tf))
json.dump(res, open(os.environ.get("OUT", "/tmp") + "/lab.json", "w"))
