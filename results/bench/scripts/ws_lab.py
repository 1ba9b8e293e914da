"""The warp-specialised Gluon GEMMs against the Triton TMA kernels: the enricher (AVEYB_ENRICHER=ws
against tma-tanh) on full and ragged row counts, with and without a padding mask, and the fuser
(AVEYB_FUSER=ws against tma: output and row statistics); then GPU times at 16,384 rows, replayed as
CUDA graphs (the Python launch path of these calls can exceed a 130 µs kernel).
Usage on a GPU: PYTHONPATH=src python3 results/bench/scripts/ws_lab.py  (JSON to $OUT/ws_lab.json)
"""
import json
import os

import torch
from triton.testing import do_bench_cudagraph

from aveyb.kernels import gemm

torch.manual_seed(0)
dev, dt = torch.device("cuda"), torch.bfloat16
d, E = 768, 4
we = (torch.randn(E * d, d, device=dev) / 28).to(dt)
be = torch.randn(E * d, device=dev, dtype=dt) * 0.1
out = {"checks": [], "times": []}
for R in (16384, 1000, 129, 16383):
    x = torch.randn(R, d, device=dev, dtype=dt)
    st = gemm.row_stats(x)
    for mask in (None, torch.rand(R, device=dev) > 0.2):
        os.environ["AVEYB_ENRICHER"] = "tma-tanh"
        ref = gemm.enrich(x, st, we, be, mask, 0, 1e-6)
        os.environ["AVEYB_ENRICHER"] = "ws"
        z = gemm.enrich(x, st, we, be, mask, 0, 1e-6)
        torch.cuda.synchronize()
        diff = float((z.float() - ref.float()).abs().max())
        rel = float((z.float() - ref.float()).norm() / ref.float().norm())
        out["checks"].append({"rows": R, "mask": mask is not None, "max_abs": diff, "rel": rel})
        print(f"rows {R:6d} mask {mask is not None!s:5s} max|ws - tma-tanh| {diff:.3e} rel {rel:.2e}", flush=True)
wf = (torch.randn(d, (E - 1) * d, device=dev) / 48).to(dt)
bf = torch.randn(d, device=dev, dtype=dt) * 0.1
alpha = torch.tensor(0.9, device=dev, dtype=dt)
for R in (16384, 1000, 129):
    x = torch.randn(R, d, device=dev, dtype=dt)
    z = gemm.enrich(x, gemm.row_stats(x), we, be, None, 0, 1e-6)
    res = {}
    for mode in ("tma", "ws"):
        os.environ["AVEYB_FUSER"] = mode
        o, stats = gemm.fuse(z[:, d:], wf, bf, x, alpha)
        res[mode] = (o.float(), stats.parts[:, :stats.count].sum(1))
    torch.cuda.synchronize()
    diff = float((res["ws"][0] - res["tma"][0]).abs().max())
    sdiff = float(((res["ws"][1] - res["tma"][1]).abs() / res["tma"][1]).max())
    out["checks"].append({"rows": R, "fuser": True, "max_abs": diff, "row_sumsq_rel": sdiff})
    print(f"fuser rows {R:6d} max|ws - tma| {diff:.3e}  row sum-of-squares rel diff {sdiff:.2e}", flush=True)
x = torch.randn(16384, d, device=dev, dtype=dt)
st = gemm.row_stats(x)
z = gemm.enrich(x, st, we, be, None, 0, 1e-6)
for rep in range(2):
    for mode in ("tma", "ws"):
        os.environ["AVEYB_FUSER"] = mode
        us = do_bench_cudagraph(lambda: gemm.fuse(z[:, d:], wf, bf, x, alpha), rep=300) * 1e3
        out["times"].append({"mode": "fuser " + mode, "us": us})
        print(f"{'fuser ' + mode:10s} {us:8.1f}", flush=True)
print(f"{'mode':10s} {'us':>8s}")
for rep in range(2):
    for mode in ("tma-tanh", "ws"):
        os.environ["AVEYB_ENRICHER"] = mode
        us = do_bench_cudagraph(lambda: gemm.enrich(x, st, we, be, None, 0, 1e-6), rep=300) * 1e3
        out["times"].append({"mode": mode, "us": us})
        print(f"{mode:10s} {us:8.1f}", flush=True)
from aveyb.kernels import gluon_gemm  # noqa: E402  stage count and tile grouping of the Gluon enricher

os.environ["AVEYB_ENRICHER"] = "ws"
for stages, group in ((3, 8), (4, 8), (5, 8), (4, 16), (4, 4)):
    gluon_gemm.STAGES, gluon_gemm.GROUP_M = stages, group
    try:
        us = do_bench_cudagraph(lambda: gemm.enrich(x, st, we, be, None, 0, 1e-6), rep=300) * 1e3
        out["times"].append({"mode": f"ws stages {stages} group {group}", "us": us})
        print(f"ws stages {stages} group {group}: {us:8.1f}", flush=True)
    except Exception as e:  # noqa: BLE001  e.g. out of shared memory
        print(f"ws stages {stages} group {group}: FAILED {str(e).splitlines()[0][:100]}", flush=True)
gluon_gemm.STAGES, gluon_gemm.GROUP_M = 4, 8
us = do_bench_cudagraph(lambda: x @ we.T, rep=300) * 1e3
out["times"].append({"mode": "cublas bare mm", "us": us})
print(f"{'cublas mm':10s} {us:8.1f}")
json.dump(out, open(os.environ.get("OUT", "/tmp") + "/ws_lab.json", "w"), indent=1)
