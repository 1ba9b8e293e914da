"""Config lab: every layer kernel at the base model's shapes (d = 768, S = 256, 16,384 rows), one
explicit launch config at a time (autotuning bypassed), timed with triton.testing.do_bench and
checked against the kernel's default path.

Tries, beyond the configs the autotuners hold: persistent loops that are not flattened (with two
programs per SM the warp scheduler can overlap one program's epilogue with the other's MMAs), and
Triton's warp specialisation (``warp_specialize=True``; experimental on Hopper, so each failure to
compile is reported, not fatal).

Usage on a GPU: PYTHONPATH=src python3 results/bench/scripts/config_lab.py [ROWS] [KERNELS]
(JSON to $OUT/config_lab_ROWS.json; KERNELS a comma list of enrich, fuse, dynamic, static, default all).
"""
import json
import os
import sys

import torch
import triton
from triton.testing import do_bench
from triton.tools.tensor_descriptor import TensorDescriptor

from aveyb.kernels import gemm, layers

torch.manual_seed(0)
dev, dt = torch.device("cuda"), torch.bfloat16
R = int(sys.argv[1]) if len(sys.argv) > 1 else 16384
KERNELS = set((sys.argv[2] if len(sys.argv) > 2 else "enrich,fuse,dynamic,static").split(","))
d, E, S = 768, 4, 256
sms = torch.cuda.get_device_properties(0).multi_processor_count
x = torch.randn(R, d, device=dev, dtype=dt)
we = (torch.randn(E * d, d, device=dev) / 28).to(dt)
be = torch.randn(E * d, device=dev, dtype=dt) * 0.1
wf = (torch.randn(d, (E - 1) * d, device=dev) / 48).to(dt)
bf = torch.randn(d, device=dev, dtype=dt) * 0.1
alpha = torch.tensor(0.9, device=dev, dtype=dt)
st = gemm.row_stats(x)
rows = []


def desc(t, shape):
    return TensorDescriptor(t, list(t.shape), list(t.stride()), shape)


def record(kernel, cfg, fn, check):
    try:
        fn()
        torch.cuda.synchronize()
        err = check()
        ms = do_bench(fn, warmup=20, rep=100)
        rows.append({"kernel": kernel, "config": cfg, "us": ms * 1e3, "max_err": err})
        print(f"{kernel:10s} {cfg:48s} {ms * 1e3:8.1f} us  err {err:.2e}", flush=True)
    except Exception as e:  # a config that does not compile or does not fit
        rows.append({"kernel": kernel, "config": cfg, "error": str(e).splitlines()[0][:200] if str(e) else repr(e)})
        print(f"{kernel:10s} {cfg:48s} FAILED {type(e).__name__}: {str(e).splitlines()[0][:150] if str(e) else ''}",
              flush=True)


# ---- enricher and fuser: (BM, BN, BK, warps, stages, OCC, FLAT, WS) ----
GEMM = [(bm, bn, bk, w, s, occ, flat, False)
        for (bm, bn, bk, w, s, occ) in ((128, 256, 64, 8, 3, 1), (128, 256, 64, 8, 4, 1), (256, 128, 64, 8, 3, 1),
                                        (128, 128, 64, 8, 4, 1), (128, 128, 64, 8, 3, 2), (128, 128, 64, 4, 3, 2),
                                        (128, 128, 64, 4, 4, 2), (128, 128, 64, 4, 2, 2), (128, 256, 64, 8, 2, 2),
                                        (128, 256, 128, 8, 2, 1), (256, 128, 128, 8, 2, 1), (128, 128, 128, 8, 2, 2))
        for flat in (True, False)]
GEMM += [(128, 128, 64, 8, 3, 1, False, True), (128, 256, 64, 8, 3, 1, False, True), (128, 128, 64, 4, 3, 1, False, True),
         (128, 128, 64, 8, 3, 1, True, True), (128, 256, 64, 8, 3, 1, True, True)]

mask = torch.rand(R, device=dev) > 0.1  # kept for a masked run: edit the loop below
for has_mask in (False,) if "enrich" in KERNELS else ():  # the benchmark's inputs carry no padding
    m = mask if has_mask else None
    m8 = mask.view(torch.uint8) if has_mask else x
    z_ref = gemm.enrich(x, st, we, be, m, 0, 1e-6)  # the autotuned default (tma-tanh)
    print("enricher default:", gemm._enricher_tma_kernel.best_config, flush=True)
    for bm, bn, bk, w, s, occ, flat, ws in GEMM:
        z = torch.empty_like(z_ref)
        grid = (min(sms * occ, triton.cdiv(R, bm) * triton.cdiv(E * d, bn)),)
        fn = lambda: gemm._enricher_tma_kernel.fn[grid](  # noqa: E731
            desc(x, [bm, bk]), desc(we, [bn, bk]), desc(z, [bm, bn // 2]), be, st.parts, m8,
            R, E * d, d, st.count, st.parts.shape[1], 0, 1e-6,
            HAS_MASK=has_mask, ACT=0, FAST=2, NUM_SMS=sms, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8, OCC=occ,
            WS=ws, FLAT=flat, num_warps=w, num_stages=s)
        record("enrich" + ("+m" if has_mask else ""), f"{bm}x{bn}x{bk} w{w} s{s} occ{occ} flat{int(flat)} ws{int(ws)}",
               fn, lambda: float((z.float() - z_ref.float()).abs().max()))

z = gemm.enrich(x, st, we, be, None, 0, 1e-6)
f = z[:, d:]
out_ref, _ = gemm.fuse(f, wf, bf, x, alpha)
print("fuser default:", gemm._fuser_tma_kernel.best_config, flush=True)
for bm, bn, bk, w, s, occ, flat, ws in GEMM if "fuse" in KERNELS else ():
    if bn > d:
        continue
    out = torch.empty_like(out_ref)
    parts = gemm.RowStats.buffer(R, d, dev)
    grid = (min(sms * occ, triton.cdiv(R, bm) * triton.cdiv(d, bn)),)
    fn = lambda: gemm._fuser_tma_kernel.fn[grid](  # noqa: E731
        desc(f, [bm, bk]), desc(wf, [bn, bk]), desc(x, [bm, bn // 2]), desc(out, [bm, bn // 2]), bf, alpha, parts,
        R, d, (E - 1) * d, parts.shape[1], 0, NUM_SMS=sms, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8, OCC=occ,
        WS=ws, FLAT=flat, num_warps=w, num_stages=s)
    record("fuse", f"{bm}x{bn}x{bk} w{w} s{s} occ{occ} flat{int(flat)} ws{int(ws)}", fn,
           lambda: float((out.float() - out_ref.float()).abs().max()))

# ---- dynamic mix: (BLOCK_T, BLOCK_D, warps, stages); static mix: (BLOCK_T, BLOCK_D, BLOCK_K, warps, stages) ----
z0 = gemm.enrich(x, st, we, be, None, 0, 1e-6).view(R // S, S, E * d)
zr = z0.clone()
layers.mix_and_gate(zr, None, "dynamic", d)
print("dynamic default:", layers._dynamic_mix_kernel.best_config, flush=True)
for bt, bd, w, s in ((64, 64, 8, 2), (128, 64, 8, 2), (64, 64, 4, 2), (32, 64, 4, 2), (64, 32, 4, 3), (16, 64, 4, 2),
                     (128, 32, 8, 3), (128, 64, 8, 3), (64, 128, 8, 2), (128, 128, 8, 2), (64, 64, 8, 3),
                     (64, 32, 8, 4), (128, 32, 8, 4), (256, 32, 8, 2), (256, 64, 8, 2)) if "dynamic" in KERNELS else ():
    zz = z0.clone()
    grid = (R // S * triton.cdiv(S, bt),)
    fn = lambda: layers._dynamic_mix_kernel.fn[grid](  # noqa: E731
        zz, zz, zz, zz, zz, S, d, E * d, 1e-12, SAVE=False, HAS_MASK=False, NORM=0, COUPLED=False, BLOCK_T=bt, BLOCK_S=S,
        BLOCK_D=bd, PREC="tf32", num_warps=w, num_stages=s)

    def check():
        zc = z0.clone()
        layers._dynamic_mix_kernel.fn[grid](zc, zc, zc, zc, zc, S, d, E * d, 1e-12, SAVE=False, HAS_MASK=False, NORM=0, COUPLED=False,
                                            BLOCK_T=bt, BLOCK_S=S, BLOCK_D=bd, PREC="tf32", num_warps=w, num_stages=s)
        return float((zc.float() - zr.float()).abs().max())
    record("dynamic", f"T{bt} D{bd} w{w} s{s}", fn, check)

p = (torch.randn(S, S, device=dev) / 16).to(dt)
zr = z0.clone()
layers.mix_and_gate(zr, None, "static", d, spatial_proj=p)
print("static default:", layers._static_mix_kernel.best_config, flush=True)
for bt, bd, bk, w, s in ((64, 128, 64, 4, 3), (128, 128, 64, 8, 3), (64, 64, 64, 4, 3), (128, 64, 64, 4, 3),
                         (64, 128, 32, 4, 4), (128, 128, 64, 8, 4), (128, 256, 64, 8, 3), (256, 128, 64, 8, 3),
                         (128, 128, 128, 8, 2), (256, 64, 64, 8, 3), (128, 192, 64, 8, 3)) if "static" in KERNELS else ():
    zz = z0.clone()
    grid = (R // S * triton.cdiv(S, bt) * triton.cdiv(d, bd),)
    fn = lambda: layers._static_mix_kernel.fn[grid](zz, p, zz, S, d, E * d, 0, SAVE=False, BLOCK_T=bt, BLOCK_D=bd, BLOCK_K=bk,  # noqa: E731
                                                    PREC="tf32", num_warps=w, num_stages=s)

    def check():
        zc = z0.clone()
        layers._static_mix_kernel.fn[grid](zc, p, zc, S, d, E * d, 0, SAVE=False, BLOCK_T=bt, BLOCK_D=bd, BLOCK_K=bk, PREC="tf32",
                                           num_warps=w, num_stages=s)
        return float((zc.float() - zr.float()).abs().max())
    record("static", f"T{bt} D{bd} K{bk} w{w} s{s}", fn, check)

print("\nbest per kernel:")
for k in sorted({r["kernel"] for r in rows}):
    ok = sorted((r for r in rows if r["kernel"] == k and "us" in r), key=lambda r: r["us"])
    for r in ok[:4]:
        print(f"  {k:10s} {r['config']:48s} {r['us']:8.1f} us  err {r['max_err']:.2e}")
json.dump({"rows": R, "gpu": torch.cuda.get_device_name(), "triton": triton.__version__, "results": rows},
          open(os.environ.get("OUT", "/tmp") + f"/config_lab_{R}.json", "w"), indent=1)
