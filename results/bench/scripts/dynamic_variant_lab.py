"""Which form of the dynamic mix forward stays correct when software-pipelined, and how fast:
PYTHONPATH=src python3 results/bench/scripts/dynamic_variant_lab.py OUT.json ROWS[,ROWS...]

``_dynamic_mix_kernel`` ("sum" normalisation, no mask) in variants of its first sweep:

* ``inloop`` -- as the library's: the squared norms summed from the loaded tiles inside the
  U_rows · U_keysᵀ loop (the form that Triton 3.6 miscompiles when pipelined);
* ``apart``  -- the norms in their own loop before it, which stays unpipelined;

and with each sweep's pipeline depth (S1 for the first, S2 for the second) set per loop by
``tl.range(num_stages=...)``. Each variant runs three times on copies of one input (bf16, d = 768,
E = 4, S = 256) and is compared with the fp32 reference, then timed with do_bench.
"""

import json
import sys

import torch
import triton
import triton.language as tl
from triton.testing import do_bench

from aveyb.kernels.layers import _gate_store, split_rows
from aveyb.model import layers as ref


@triton.jit
def _variant_kernel(z_ptr, S, D, ZW, eps, APART: tl.constexpr, S1: tl.constexpr, S2: tl.constexpr,
                    BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    m, t_block = split_rows(S, BLOCK_T)
    rows = t_block * BLOCK_T + tl.arange(0, BLOCK_T)
    keys = tl.arange(0, BLOCK_S)
    key_in = keys < S
    row_in = rows < S
    base = m.to(tl.int64) * S
    row_offs = (base + rows)[:, None] * ZW
    key_offs = (base + keys)[:, None] * ZW
    a = tl.zeros((BLOCK_T, BLOCK_S), dtype=tl.float32)
    sq_r = tl.zeros((BLOCK_T,), dtype=tl.float32)
    sq_k = tl.zeros((BLOCK_S,), dtype=tl.float32)
    if APART:
        for d0 in tl.range(0, D, BLOCK_D, num_stages=1):
            dd = d0 + tl.arange(0, BLOCK_D)
            u_r = tl.load(z_ptr + row_offs + dd[None, :], mask=row_in[:, None] & (dd < D)[None, :], other=0.0)
            u_k = tl.load(z_ptr + key_offs + dd[None, :], mask=key_in[:, None] & (dd < D)[None, :], other=0.0)
            sq_r += tl.sum(u_r.to(tl.float32) * u_r.to(tl.float32), axis=1)
            sq_k += tl.sum(u_k.to(tl.float32) * u_k.to(tl.float32), axis=1)
    for d0 in tl.range(0, D, BLOCK_D, num_stages=S1):
        dd = d0 + tl.arange(0, BLOCK_D)
        u_r = tl.load(z_ptr + row_offs + dd[None, :], mask=row_in[:, None] & (dd < D)[None, :], other=0.0)
        u_k = tl.load(z_ptr + key_offs + dd[None, :], mask=key_in[:, None] & (dd < D)[None, :], other=0.0)
        a = tl.dot(u_r, tl.trans(u_k), a)
        if not APART:
            sq_r += tl.sum(u_r.to(tl.float32) * u_r.to(tl.float32), axis=1)
            sq_k += tl.sum(u_k.to(tl.float32) * u_k.to(tl.float32), axis=1)
    inv_r = 1.0 / tl.maximum(tl.sqrt(sq_r), eps)
    inv_k = 1.0 / tl.maximum(tl.sqrt(sq_k), eps)
    a = a * inv_r[:, None] * inv_k[None, :]
    a = a / tl.maximum(tl.sum(tl.abs(a), axis=1), eps)[:, None]
    a = a.to(z_ptr.dtype.element_ty)
    for d0 in tl.range(0, D, BLOCK_D, num_stages=S2):
        dd = d0 + tl.arange(0, BLOCK_D)
        u = tl.load(z_ptr + key_offs + dd[None, :], mask=key_in[:, None] & (dd < D)[None, :], other=0.0)
        _gate_store(z_ptr, z_ptr, m, rows, dd, tl.dot(a, u), S, D, ZW, False)


dev, dt = torch.device("cuda"), torch.bfloat16
d, E, S, EPS = 768, 4, 256, 1e-12
ZW = E * d
TILES = [(128, 64, 8), (64, 64, 4), (128, 128, 8), (64, 128, 8), (32, 64, 4)]
STAGES = [(1, 1), (2, 1), (3, 1), (2, 2), (3, 3)]
out = []
for rows in map(int, sys.argv[2].split(",")):
    torch.manual_seed(0)
    M = rows // S
    z0 = torch.nn.functional.gelu(torch.randn(M, S, ZW, device=dev)).to(dt)
    zf = z0.float()
    want = zf[..., d:2 * d] * ref.dynamic_mix(zf[..., :d], None, "sum", EPS, None, None)
    for apart in (False, True):
        for bt, bd, w in TILES:
            for s1, s2 in STAGES:
                def launch(z, apart=apart, bt=bt, bd=bd, w=w, s1=s1, s2=s2):
                    _variant_kernel[(M * triton.cdiv(S, bt),)](z, S, d, ZW, EPS, APART=apart, S1=s1, S2=s2,
                                                                 BLOCK_T=bt, BLOCK_S=S, BLOCK_D=bd, num_warps=w)
                name = f"{'apart' if apart else 'inloop'} T{bt} D{bd} w{w} S1={s1} S2={s2}"
                try:
                    runs = []
                    for _ in range(3):
                        z = z0.clone()
                        launch(z)
                        runs.append(z[..., d:2 * d].float())
                    zt = z0.clone()
                    us = do_bench(lambda: launch(zt), warmup=5, rep=40) * 1e3
                except Exception as err:  # a config over the shared-memory limit
                    print(json.dumps({"rows": rows, "variant": name, "error": str(err)[:120]}), flush=True)
                    continue
                diff = (runs[0] - want).abs()
                row = {"rows": rows, "variant": name, "repeats_equal": all(torch.equal(runs[0], r) for r in runs[1:]),
                       "vs_ref_max": float(diff.max()), "elements_off_by_1e-2": int((diff > 1e-2).sum()),
                       "us": round(us, 1)}
                out.append(row)
                print(json.dumps(row), flush=True)
json.dump({"gpu": torch.cuda.get_device_name(), "triton": triton.__version__, "results": out},
          open(sys.argv[1], "w"), indent=1)
ok = [r for r in out if r["repeats_equal"] and r["elements_off_by_1e-2"] == 0]
print("\nfastest correct by rows and variant:")
for rows in sorted({r["rows"] for r in out}):
    for v in ("inloop", "apart"):
        best = min((r for r in ok if r["rows"] == rows and r["variant"].startswith(v)), key=lambda r: r["us"], default=None)
        print(rows, v, best and (best["variant"], best["us"]))
