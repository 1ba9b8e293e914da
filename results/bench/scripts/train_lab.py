"""Train-kernel lab: the training layer's Triton kernels at the train step's shapes (16 x 2,048 =
32,768 rows, d = 768, E = 4, S = 256, bf16), one explicit launch config at a time (autotuning
bypassed), timed with triton.testing.do_bench and checked against the autotuned default.

Kernels: the dynamic contextualizer's two backward kernels (scores, mix), the static one's, the
gate backward and the activation forward. For the elementwise ones it prints GB/s from the bytes
they must move. Candidate configs go beyond the autotuners' lists (larger BLOCK_K, more stages,
whole-split row blocks), so that a better one can be adopted with evidence.

Usage on a GPU: PYTHONPATH=src python3 results/bench/scripts/train_lab.py [KERNELS]
(KERNELS a comma list of scores, mixbwd, static, gate, act; default all; JSON to $OUT/train_lab.json).
"""
import itertools
import json
import os
import sys

import torch
import triton
from triton.testing import do_bench

from aveyb.kernels import backward as kb
from aveyb.kernels import training
from aveyb.kernels.tuning import dot_precision

torch.manual_seed(0)
dev, dt = torch.device("cuda"), torch.bfloat16
KERNELS = set((sys.argv[1] if len(sys.argv) > 1 else "scores,mixbwd,static,gate,act").split(","))
R, d, E, S, EPS = 32768, 768, 4, 256, 1e-12
ZW, FW, M = E * d, (E - 1) * d, 32768 // 256
prec = dot_precision(dt)
zpre = torch.randn(R, ZW, device=dev, dtype=dt)
z = torch.nn.functional.gelu(zpre.float()).to(dt)
dmix = (torch.randn(R, d, device=dev) * 0.01).to(dt)
rows = []


def record(kernel, cfg, fn, check, gbytes=None):
    try:
        fn()
        torch.cuda.synchronize()
        err = check()
        ms = do_bench(fn, warmup=10, rep=60)
        row = {"kernel": kernel, "config": cfg, "us": ms * 1e3, "max_err": err}
        if gbytes:
            row["gb_per_s"] = gbytes / (ms / 1e3)
        rows.append(row)
        extra = f"  {row['gb_per_s']:6.0f} GB/s" if gbytes else ""
        print(f"{kernel:8s} {cfg:34s} {ms * 1e3:8.1f} us  err {err:.2e}{extra}", flush=True)
    except Exception as e:  # a config that does not compile or does not fit in shared memory
        msg = str(e).splitlines()[0][:160] if str(e) else repr(e)
        rows.append({"kernel": kernel, "config": cfg, "error": msg})
        print(f"{kernel:8s} {cfg:34s} FAILED {type(e).__name__}: {msg}", flush=True)


def err(a, b):
    return float((a.float() - b.float()).abs().max())


# ---- the dynamic backward's reference outputs (the autotuned path) ----
dzpre_ref = torch.zeros_like(zpre)
training._mix_backward(z, dmix, zpre, None, dzpre_ref, None, None, "dynamic", "gelu", "sum", EPS, S)
print("scores default:", kb._dynamic_scores_backward_kernel.best_config)
print("mix bwd default:", kb._dynamic_mix_backward_kernel.best_config, flush=True)
n_t, dc, dc_t = (torch.empty(M, S, S, device=dev, dtype=dt) for _ in range(3))
inv, rho = torch.empty(R, device=dev), torch.zeros(R, device=dev)


def scores(bt, bd, w, s, out):
    kb._dynamic_scores_backward_kernel.fn[(M * triton.cdiv(S, bt),)](
        z, dmix, z, z, z, *out, out[4], out[4], S, d, ZW, EPS, HAS_MASK=False, NORM=0, COUPLED=False, PREC=prec,
        BLOCK_S=S, BLOCK_T=bt, BLOCK_D=bd, num_warps=w, num_stages=s)


ref_out = [n_t, dc, dc_t, inv, rho]
rho.zero_()
grid = lambda meta: (M * triton.cdiv(S, meta["BLOCK_T"]),)  # noqa: E731
kb._dynamic_scores_backward_kernel[grid](z, dmix, z, z, z, n_t, dc, dc_t, inv, rho, rho, rho, S, d, ZW, EPS,
                                         HAS_MASK=False, NORM=0, COUPLED=False, PREC=prec, BLOCK_S=S)
for bt, bd, s in itertools.product((16, 32, 64), (32, 64, 128), (2, 3)) if "scores" in KERNELS else ():
    w = 8 if bt >= 64 else 4
    out = [torch.empty_like(t) for t in ref_out]

    def check(bt=bt, bd=bd, w=w, s=s, out=out):
        out[4].zero_()
        scores(bt, bd, w, s, out)
        return max(err(a, b) for a, b in zip(out, ref_out))
    record("scores", f"T{bt} D{bd} w{w} s{s}", lambda bt=bt, bd=bd, w=w, s=s, out=out: scores(bt, bd, w, s, out), check)

MIX_CONFIGS = [(bt, bd, bk, 8 if bt * bd >= 128 * 128 else 4, s)
               for bt, bd, bk, s in itertools.product((64, 128, 256), (64, 128, 256), (32, 64), (2, 3))
               if bt * bd <= 128 * 256]
for bt, bd, bk, w, s in MIX_CONFIGS if "mixbwd" in KERNELS else ():
    dzpre = torch.zeros_like(zpre)
    fn = lambda bt=bt, bd=bd, bk=bk, w=w, s=s, dzpre=dzpre: kb._dynamic_mix_backward_kernel.fn[  # noqa: E731
        (M * triton.cdiv(S, bt) * triton.cdiv(d, bd),)](
        z, dmix, n_t, dc, dc_t, inv, rho, zpre, z, dzpre, S, d, ZW, EPS, ACT=0, HAS_MASK=False, PREC=prec,
        BLOCK_T=bt, BLOCK_D=bd, BLOCK_K=bk, num_warps=w, num_stages=s)
    record("mixbwd", f"T{bt} D{bd} K{bk} w{w} s{s}", fn, lambda dzpre=dzpre: err(dzpre[:, :d], dzpre_ref[:, :d]))

# ---- static backward: dU = Pᵀ · d mix(U) ----
p = (torch.randn(S, S, device=dev) / 16).to(dt)
dz_static = torch.zeros_like(zpre)
training._mix_backward(z, dmix, zpre, None, dz_static, p, None, "static", "gelu", "sum", EPS, S)
print("static bwd default:", kb._static_mix_backward_kernel.best_config, flush=True)
for bt, bd, bk, w, s in MIX_CONFIGS if "static" in KERNELS else ():
    dzpre = torch.zeros_like(zpre)
    fn = lambda bt=bt, bd=bd, bk=bk, w=w, s=s, dzpre=dzpre: kb._static_mix_backward_kernel.fn[  # noqa: E731
        (M * triton.cdiv(S, bt) * triton.cdiv(d, bd),)](
        dmix, p, zpre, z, dzpre, S, d, ZW, ACT=0, HAS_MASK=False, PREC=prec, BLOCK_T=bt, BLOCK_D=bd, BLOCK_K=bk,
        num_warps=w, num_stages=s)
    record("static", f"T{bt} D{bd} K{bk} w{w} s{s}", fn, lambda dzpre=dzpre: err(dzpre[:, :d], dz_static[:, :d]))

# ---- elementwise: gate backward (reads dF, Zpre[:, d:], mix(U); writes dZpre[:, d:], d mix) and act ----
df = (torch.randn(R, FW, device=dev) * 0.01).to(dt)
mixu = torch.randn(R, d, device=dev, dtype=dt)
gate_gb = 2 * R * (FW + FW + d + FW + d) / 1e9
dz_gate_ref, dmix_gate_ref = torch.zeros_like(zpre), torch.empty_like(dmix)
kb._gate_backward_kernel[lambda meta: (triton.cdiv(R, meta["BLOCK_R"]), triton.cdiv(FW, meta["BLOCK_N"]))](
    df, zpre, mixu, dz_gate_ref, dmix_gate_ref, R, FW, d, ZW, ACT=0)
print("gate default:", kb._gate_backward_kernel.best_config, flush=True)
act_ref = torch.empty_like(zpre)
kb._act_forward_kernel[lambda meta: (triton.cdiv(R, meta["BLOCK_R"]), triton.cdiv(ZW, meta["BLOCK_N"]))](
    zpre, act_ref, z, R, ZW, d, ACT=0, HAS_MASK=False)
print("act default:", kb._act_forward_kernel.best_config, flush=True)
for br, bn, w in itertools.product((4, 8, 16, 32, 64), (64, 128, 256, 512), (4, 8)):
    if br * bn > 16384 or br * bn < 512:
        continue
    if "gate" in KERNELS:
        dz, dm = torch.zeros_like(zpre), torch.empty_like(dmix)
        fn = lambda br=br, bn=bn, w=w, dz=dz, dm=dm: kb._gate_backward_kernel.fn[  # noqa: E731
            (triton.cdiv(R, br), triton.cdiv(FW, bn))](df, zpre, mixu, dz, dm, R, FW, d, ZW, ACT=0, BLOCK_R=br,
                                                        BLOCK_N=bn, num_warps=w)
        record("gate", f"R{br} N{bn} w{w}", fn,
               lambda dz=dz, dm=dm: max(err(dz[:, d:], dz_gate_ref[:, d:]), err(dm, dmix_gate_ref)), gate_gb)
    if "act" in KERNELS:
        zz = torch.empty_like(zpre)
        fn = lambda br=br, bn=bn, w=w, zz=zz: kb._act_forward_kernel.fn[  # noqa: E731
            (triton.cdiv(R, br), triton.cdiv(ZW, bn))](zpre, zz, z, R, ZW, d, ACT=0, HAS_MASK=False, BLOCK_R=br,
                                                        BLOCK_N=bn, num_warps=w)
        record("act", f"R{br} N{bn} w{w}", fn, lambda zz=zz: err(zz, act_ref), 2 * 2 * R * ZW / 1e9)

print("\nbest per kernel (default = the autotuned choice printed above):")
summary = {}
for k in sorted({r["kernel"] for r in rows}):
    ok = sorted((r for r in rows if r["kernel"] == k and "us" in r), key=lambda r: r["us"])
    summary[k] = ok[:5]
    for r in ok[:5]:
        print(f"  {k:8s} {r['config']:34s} {r['us']:8.1f} us  err {r['max_err']:.2e}")
json.dump({"rows": R, "gpu": torch.cuda.get_device_name(), "triton": triton.__version__,
           "defaults": {"scores": str(kb._dynamic_scores_backward_kernel.best_config),
                        "mixbwd": str(kb._dynamic_mix_backward_kernel.best_config),
                        "static": str(kb._static_mix_backward_kernel.best_config),
                        "gate": str(kb._gate_backward_kernel.best_config),
                        "act": str(kb._act_forward_kernel.best_config)},
           "best": summary, "results": rows},
          open(os.environ.get("OUT", "/tmp") + "/train_lab.json", "w"), indent=1)
