"""Split-major program order against the previous split-fastest grids, in one process: the five
mix kernels (static and dynamic forward, the static backward, the dynamic scores and mix backward)
with the same launch config each (the one the autotuner picks now), timed alternately with
triton.testing.do_bench, and their outputs compared.

The previous kernels come from the src carried in ``.carry/src_old`` (loaded under other module
names; their helpers resolve to this src's, which are unchanged). Shapes: d = 768, E = 4, S = 256,
bf16; the forward kernels at 32,768 and 262,144 rows (16 x 2,048 and 8 x 32,768), the backward
ones at 32,768 (the train step's).

Usage on a GPU: PYTHONPATH=src python3 results/bench/scripts/split_order_ab.py OUT.json
"""

import importlib.util
import json
import sys

import torch
import triton
from triton.testing import do_bench

from aveyb.kernels import backward as kb
from aveyb.kernels import layers, training
from aveyb.kernels.tuning import dot_precision


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


old_layers = load(".carry/src_old/aveyb/kernels/layers.py", "old_layers")
old_kb = load(".carry/src_old/aveyb/kernels/backward.py", "old_backward")
torch.manual_seed(0)
dev, dt = torch.device("cuda"), torch.bfloat16
d, E, S, EPS = 768, 4, 256, 1e-12
ZW, prec = E * d, dot_precision(dt)
rows_out = []


def compare(name, rows, new_fn, old_fn):
    """Times both (alternating, 3 rounds, the best of each); the caller adds the outputs' difference."""
    t_new, t_old = float("inf"), float("inf")
    for _ in range(3):
        t_new = min(t_new, do_bench(new_fn, warmup=5, rep=40) * 1e3)
        t_old = min(t_old, do_bench(old_fn, warmup=5, rep=40) * 1e3)
    row = {"kernel": name, "rows": rows, "split_major_us": t_new, "split_fastest_us": t_old, "speedup": t_old / t_new}
    rows_out.append(row)
    return row


def report(row, diff):
    row["max_diff"] = diff
    print(f"| {row['kernel']:11s} | {row['rows']:7d} | {row['split_fastest_us']:8.1f} | {row['split_major_us']:8.1f} | "
          f"{row['speedup']:5.2f}x | {diff:.1e} |", flush=True)


def cfg(kernel):
    return kernel.best_config.all_kwargs()


print("| kernel | rows | split-fastest µs | split-major µs | speedup | max diff |")
print("|---|---:|---:|---:|---:|---:|")
p = (torch.randn(S, S, device=dev) / 16).to(dt)
for R in (32768, 262144):
    M = R // S
    z0 = torch.nn.functional.gelu(torch.randn(R, ZW, device=dev)).to(dt)
    # static forward: timed in place (the gate applied again each call), compared on fresh copies
    zs = z0.clone().view(M, S, ZW)
    layers.mix_and_gate(zs.clone(), None, "static", d, spatial_proj=p)
    c = cfg(layers._static_mix_kernel)
    bucket = min(triton.next_power_of_2(M), 1024)
    nb = lambda c=c: M * triton.cdiv(S, c["BLOCK_T"]) * triton.cdiv(d, c["BLOCK_D"])  # noqa: E731
    za, zb = z0.clone(), z0.clone()
    compare("static fwd", R,
            lambda: layers._static_mix_kernel.fn[(nb(),)](za, p, za, S, d, ZW, bucket, SAVE=False, PREC=prec, **c),
            lambda: old_layers._static_mix_kernel.fn[(M, triton.cdiv(S, c["BLOCK_T"]), triton.cdiv(d, c["BLOCK_D"]))](
                zb, p, zb, S, d, ZW, bucket, SAVE=False, PREC=prec, **c))
    za, zb = z0.clone(), z0.clone()
    layers._static_mix_kernel.fn[(nb(),)](za, p, za, S, d, ZW, bucket, SAVE=False, PREC=prec, **c)
    old_layers._static_mix_kernel.fn[(M, triton.cdiv(S, c["BLOCK_T"]), triton.cdiv(d, c["BLOCK_D"]))](
        zb, p, zb, S, d, ZW, bucket, SAVE=False, PREC=prec, **c)
    report(rows_out[-1], float((za.float() - zb.float()).abs().max()))
    # dynamic forward
    layers.mix_and_gate(z0.clone().view(M, S, ZW), None, "dynamic", d)
    c = cfg(layers._dynamic_mix_kernel)
    za, zb = z0.clone(), z0.clone()
    args = lambda z: (z, z, z, z, z, S, d, ZW, EPS)  # noqa: E731
    kw = dict(SAVE=False, HAS_MASK=False, NORM=0, COUPLED=False, BLOCK_S=S, PREC=prec, **c)
    compare("dynamic fwd", R,
            lambda: layers._dynamic_mix_kernel.fn[(M * triton.cdiv(S, c["BLOCK_T"]),)](*args(za), **kw),
            lambda: old_layers._dynamic_mix_kernel.fn[(M, triton.cdiv(S, c["BLOCK_T"]))](*args(zb), **kw))
    za, zb = z0.clone(), z0.clone()
    layers._dynamic_mix_kernel.fn[(M * triton.cdiv(S, c["BLOCK_T"]),)](*args(za), **kw)
    old_layers._dynamic_mix_kernel.fn[(M, triton.cdiv(S, c["BLOCK_T"]))](*args(zb), **kw)
    report(rows_out[-1], float((za.float() - zb.float()).abs().max()))
    za = zb = z0 = zs = None
    torch.cuda.empty_cache()

# backward kernels at the train step's 32,768 rows
R = 32768
M = R // S
zpre = torch.randn(R, ZW, device=dev, dtype=dt)
z = torch.nn.functional.gelu(zpre.float()).to(dt)
dmix = (torch.randn(R, d, device=dev) * 0.01).to(dt)
training._mix_backward(z, dmix, zpre, None, torch.zeros_like(zpre), p, None, "static", "gelu", "sum", EPS, S)
c = cfg(kb._static_mix_backward_kernel)
da, db = torch.zeros_like(zpre), torch.zeros_like(zpre)
st_args = lambda dz: (dmix, p, zpre, z, dz, S, d, ZW)  # noqa: E731
kw = dict(ACT=0, HAS_MASK=False, PREC=prec, **c)
compare("static bwd", R,
        lambda: kb._static_mix_backward_kernel.fn[(M * triton.cdiv(S, c["BLOCK_T"]) * triton.cdiv(d, c["BLOCK_D"]),)](
            *st_args(da), **kw),
        lambda: old_kb._static_mix_backward_kernel.fn[(M, triton.cdiv(S, c["BLOCK_T"]), triton.cdiv(d, c["BLOCK_D"]))](
            *st_args(db), **kw))
report(rows_out[-1], float((da[:, :d].float() - db[:, :d].float()).abs().max()))

training._mix_backward(z, dmix, zpre, None, torch.zeros_like(zpre), None, None, "dynamic", "gelu", "sum", EPS, S)
c = cfg(kb._dynamic_scores_backward_kernel)
bufs = lambda: [torch.empty(M, S, S, device=dev, dtype=dt) for _ in range(3)] + [torch.empty(R, device=dev),  # noqa: E731
                                                                                   torch.zeros(R, device=dev)]
na, nb_ = bufs(), bufs()
sc_args = lambda b: (z, dmix, z, z, z, *b, b[4], b[4], S, d, ZW, EPS)  # noqa: E731
kw = dict(HAS_MASK=False, NORM=0, COUPLED=False, PREC=prec, BLOCK_S=S, **c)
compare("scores bwd", R,
        lambda: kb._dynamic_scores_backward_kernel.fn[(M * triton.cdiv(S, c["BLOCK_T"]),)](*sc_args(na), **kw),
        lambda: old_kb._dynamic_scores_backward_kernel.fn[(M, triton.cdiv(S, c["BLOCK_T"]))](*sc_args(nb_), **kw))
for b in (na, nb_):
    b[4].zero_()
kb._dynamic_scores_backward_kernel.fn[(M * triton.cdiv(S, c["BLOCK_T"]),)](*sc_args(na), **kw)
old_kb._dynamic_scores_backward_kernel.fn[(M, triton.cdiv(S, c["BLOCK_T"]))](*sc_args(nb_), **kw)
report(rows_out[-1], max(float((a.float() - b.float()).abs().max()) for a, b in zip(na[:4], nb_[:4])))

c = cfg(kb._dynamic_mix_backward_kernel)
da, db = torch.zeros_like(zpre), torch.zeros_like(zpre)
mb_args = lambda dz: (z, dmix, na[0], na[1], na[2], na[3], na[4], zpre, z, dz, S, d, ZW, EPS)  # noqa: E731
kw = dict(ACT=0, HAS_MASK=False, PREC=prec, **c)
compare("mix bwd", R,
        lambda: kb._dynamic_mix_backward_kernel.fn[(M * triton.cdiv(S, c["BLOCK_T"]) * triton.cdiv(d, c["BLOCK_D"]),)](
            *mb_args(da), **kw),
        lambda: old_kb._dynamic_mix_backward_kernel.fn[(M, triton.cdiv(S, c["BLOCK_T"]), triton.cdiv(d, c["BLOCK_D"]))](
            *mb_args(db), **kw))
report(rows_out[-1], float((da[:, :d].float() - db[:, :d].float()).abs().max()))

json.dump({"gpu": torch.cuda.get_device_name(), "triton": triton.__version__, "results": rows_out},
          open(sys.argv[1], "w"), indent=1)
