"""Triton kernels of the layer's training path (``training.py``): the elementwise forward passes
that keep what the backward needs, and the backward of RMSNorm, the activation, the gate and
both contextualizers (SPEC.md section 3; the derivation is in docs/kernels.md, "Training path").

Shapes: R = M·S rows (M splits of S rows), d the width, Z = [U | G | Zb] (R, ZW = E·d), the
fuser's input F = Z[:, d:] (R, FW = ZW - d). Every kernel names the reference it differentiates.
"""

from __future__ import annotations

import triton
import triton.language as tl

from aveyb.kernels.gemm import _keep_rows, act_fn
from aveyb.kernels.layers import spatial_product, split_rows, split_tile
from aveyb.kernels.tuning import tunable


@triton.jit
def act_grad(x, ACT: tl.constexpr):
    """d act / dx for exact GELU (0), tanh GELU (1), ReLU (2), SiLU (3) (``ACT_FNS``' autograd)."""
    if ACT == 0:
        cdf = 0.5 * (1.0 + tl.math.erf(x * 0.7071067811865476))
        y = cdf + x * 0.3989422804014327 * tl.exp(-0.5 * x * x)
    elif ACT == 1:
        inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        t = 2.0 * tl.sigmoid(2.0 * inner) - 1.0
        y = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 0.134145 * x * x)
    elif ACT == 2:
        y = tl.where(x > 0, 1.0, 0.0)
    else:
        s = tl.sigmoid(x)
        y = s * (1.0 + x * (1.0 - s))
    return y


# ---- RMSNorm ----
_ROW_CONFIGS = [triton.Config({"BLOCK_R": br}, num_warps=w) for br, w in ((4, 4), (8, 8), (16, 8), (8, 4), (32, 8))]


@triton.autotune(configs=tunable(_ROW_CONFIGS), key=["D"])
@triton.jit
def _rms_forward_kernel(x_ptr, g_ptr, xn_ptr, rstd_ptr, R, D, XN_W, eps,
                        BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """xn = x · r · g, r = rsqrt(mean(x²) + eps) (``rms_norm``), r kept for the backward. xn's rows
    are XN_W ≥ D + 1 wide: column D holds 1 and the rest 0, so that the weight-gradient GEMM
    dZpreᵀ · xn also yields the bias gradient Σ_rows dZpre in its column D."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    dd = tl.arange(0, BLOCK_D)
    row_ok = (rows < R)[:, None]
    offs = rows.to(tl.int64)[:, None] * D + dd[None, :]
    x = tl.load(x_ptr + offs, mask=row_ok & (dd < D)[None, :], other=0.0).to(tl.float32)
    r = tl.math.rsqrt(tl.sum(x * x, axis=1) / D + eps)
    g = tl.load(g_ptr + dd, mask=dd < D, other=0.0).to(tl.float32)
    xn = tl.where((dd == D)[None, :], 1.0, x * r[:, None] * g[None, :])
    tl.store(xn_ptr + rows.to(tl.int64)[:, None] * XN_W + dd[None, :], xn.to(xn_ptr.dtype.element_ty),
             mask=row_ok & (dd < XN_W)[None, :])
    tl.store(rstd_ptr + rows, r, mask=rows < R)


# Kernels that also reduce over rows (dg, dα, the fuser bias's gradient) give each program ROWS_PER_PROGRAM
# rows, swept BLOCK_R at a time, and write one partial sum per program: the final sums stay
# deterministic and the partial buffers small (R / 32 rows). Longer row loops measured slower
# (256 rows: the gate backward took 317 µs against 207 µs with one tile per program, 32,768 rows).
ROWS_PER_PROGRAM = 32


@triton.autotune(configs=tunable(_ROW_CONFIGS), key=["D"])
@triton.jit
def _rms_backward_kernel(dxn_ptr, x_ptr, rstd_ptr, g_ptr, dout_ptr, alpha_ptr, dx_ptr, dg_ptr, dalpha_ptr,
                         R, D, RPP: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """dx = r · (ĝ − x̂ · mean(ĝ ⊙ x̂)) + α · dout with x̂ = x·r, ĝ = dxn ⊙ g (RMSNorm's backward plus
    the residual's); per program, the partial sums of dg = Σ dxn ⊙ x̂ and dα = Σ dout ⊙ x."""
    pid = tl.program_id(0)
    dd = tl.arange(0, BLOCK_D)
    g = tl.load(g_ptr + dd, mask=dd < D, other=0.0).to(tl.float32)
    alpha = tl.load(alpha_ptr).to(tl.float32)
    dg = tl.zeros((BLOCK_D,), dtype=tl.float32)
    da = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for r0 in range(0, RPP, BLOCK_R):
        rows = pid * RPP + r0 + tl.arange(0, BLOCK_R)
        ok = (rows < R)[:, None] & (dd < D)[None, :]
        offs = rows.to(tl.int64)[:, None] * D + dd[None, :]
        x = tl.load(x_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        dxn = tl.load(dxn_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        dout = tl.load(dout_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        r = tl.load(rstd_ptr + rows, mask=rows < R, other=0.0)
        xhat = x * r[:, None]
        ghat = dxn * g[None, :]
        mean = tl.sum(ghat * xhat, axis=1) / D
        dx = r[:, None] * (ghat - xhat * mean[:, None]) + alpha * dout
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=ok)
        dg += tl.sum(dxn * xhat, axis=0)
        da += tl.sum(dout * x, axis=1)
    tl.store(dg_ptr + pid.to(tl.int64) * D + dd, dg, mask=dd < D)
    tl.store(dalpha_ptr + pid, tl.sum(da, axis=0))


@triton.jit
def _residual_kernel(y_ptr, x_ptr, alpha_ptr, out_ptr, n, BLOCK: tl.constexpr):
    """out = y + α · x (the layer's residual; x and out may be fp32 while y is bf16)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    y = tl.load(y_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, (y + tl.load(alpha_ptr).to(tl.float32) * x).to(out_ptr.dtype.element_ty), mask=ok)


_COLSUM_CONFIGS = [triton.Config({"BLOCK_R": br, "BLOCK_N": bn}, num_warps=w)
                   for br, bn, w in ((16, 128, 4), (32, 128, 8), (32, 64, 4), (16, 256, 8), (32, 256, 8))]


@triton.autotune(configs=tunable(_COLSUM_CONFIGS), key=["N"])
@triton.jit
def _cast_colsum_kernel(src_ptr, dst_ptr, part_ptr, R, N, RPP: tl.constexpr, BLOCK_R: tl.constexpr,
                        BLOCK_N: tl.constexpr):
    """dst = src in dst's dtype (the output gradient in the compute dtype), and per program the
    column sums of dst (the fuser bias's gradient)."""
    pid = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for r0 in range(0, RPP, BLOCK_R):
        rows = pid * RPP + r0 + tl.arange(0, BLOCK_R)
        ok = (rows < R)[:, None] & (cols < N)[None, :]
        offs = rows.to(tl.int64)[:, None] * N + cols[None, :]
        v = tl.load(src_ptr + offs, mask=ok, other=0.0).to(dst_ptr.dtype.element_ty)
        tl.store(dst_ptr + offs, v, mask=ok)
        acc += tl.sum(v.to(tl.float32), axis=0)
    tl.store(part_ptr + pid.to(tl.int64) * N + cols, acc, mask=cols < N)


# ---- activation and gate ----
_ELEM_CONFIGS = [triton.Config({"BLOCK_R": br, "BLOCK_N": bn}, num_warps=w)
                 for br, bn, w in ((32, 128, 4), (16, 256, 4), (64, 128, 8), (8, 128, 4), (4, 512, 4))]


@triton.autotune(configs=tunable(_ELEM_CONFIGS), key=["N", "D"])
@triton.jit
def _act_forward_kernel(zpre_ptr, z_ptr, mask_ptr, R, N, D, ACT: tl.constexpr, HAS_MASK: tl.constexpr,
                        BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    """Z = act(Zpre), U (the first D columns) zeroed on padded rows (``AveyBLayer.enrich`` + the mask)."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    ok = (rows < R)[:, None] & (cols < N)[None, :]
    offs = rows.to(tl.int64)[:, None] * N + cols[None, :]
    z = act_fn(tl.load(zpre_ptr + offs, mask=ok, other=0.0).to(tl.float32), ACT)
    if HAS_MASK:
        keep = _keep_rows(mask_ptr, rows, rows < R, HAS_MASK)
        z = tl.where(keep[:, None] | (cols >= D)[None, :], z, 0.0)
    tl.store(z_ptr + offs, z.to(z_ptr.dtype.element_ty), mask=ok)


@triton.autotune(configs=tunable(_ELEM_CONFIGS), key=["FW", "D"])
@triton.jit
def _gate_backward_kernel(df_ptr, zpre_ptr, mixu_ptr, dzpre_ptr, dmix_ptr, R, FW, D, ZW, ACT: tl.constexpr,
                          BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    """From dF = d[G ⊙ mix(U) ; Zb] (R, FW): dZpre for G and Zb (through act'), and
    d mix(U) = dF_G ⊙ G for the mix's backward (``AveyBLayer.forward``'s gate and concatenation)."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    r64 = rows.to(tl.int64)
    ok = (rows < R)[:, None] & (cols < FW)[None, :]
    gate = ok & (cols < D)[None, :]
    df = tl.load(df_ptr + r64[:, None] * FW + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    zp = tl.load(zpre_ptr + r64[:, None] * ZW + D + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    mixu = tl.load(mixu_ptr + r64[:, None] * D + cols[None, :], mask=gate, other=1.0).to(tl.float32)
    dz = df * mixu * act_grad(zp, ACT)
    tl.store(dzpre_ptr + r64[:, None] * ZW + D + cols[None, :], dz.to(dzpre_ptr.dtype.element_ty), mask=ok)
    tl.store(dmix_ptr + r64[:, None] * D + cols[None, :], (df * act_fn(zp, ACT)).to(dmix_ptr.dtype.element_ty),
             mask=gate)


@triton.jit
def _store_du(du, zpre_ptr, mask_ptr, dzpre_ptr, m, rows, dd, S, D, ZW, ACT: tl.constexpr,
              HAS_MASK: tl.constexpr):
    """dZpre_U = dU ⊙ act'(Zpre_U) on real rows, 0 on padded ones (U = act(Zpre_U) ⊙ mask)."""
    r64 = m.to(tl.int64) * S + rows
    ok = (rows < S)[:, None] & (dd < D)[None, :]
    offs = r64[:, None] * ZW + dd[None, :]
    zp = tl.load(zpre_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    du = du * act_grad(zp, ACT)
    if HAS_MASK:
        keep = _keep_rows(mask_ptr, r64, rows < S, HAS_MASK)
        du = tl.where(keep[:, None], du, 0.0)
    tl.store(dzpre_ptr + offs, du.to(dzpre_ptr.dtype.element_ty), mask=ok)


# ---- static contextualizer: mix(U) = P · U ----
_STATIC_BWD_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_D": bd, "BLOCK_K": bk}, num_warps=w, num_stages=st)
    for bt, bd, bk, w, st in ((64, 128, 64, 4, 3), (128, 128, 64, 8, 3), (64, 64, 64, 4, 3), (32, 128, 32, 4, 3))
]


# NB, the split-count bucket (tuning.size_bucket), only keys the autotuner in the three kernels below.
@triton.autotune(configs=tunable(_STATIC_BWD_CONFIGS), key=["S", "D", "ZW", "NB"])
@triton.jit(do_not_specialize=["NB"])
def _static_mix_backward_kernel(dmix_ptr, p_ptr, zpre_ptr, mask_ptr, dzpre_ptr, S, D, ZW, NB,
                                ACT: tl.constexpr, HAS_MASK: tl.constexpr, PREC: tl.constexpr,
                                BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr):
    """dU = Pᵀ · d mix(U) per split (``static_mix``'s backward for U), then through act' and the mask."""
    m, t_block, d_block = split_tile(S, D, BLOCK_T, BLOCK_D)
    rows = t_block * BLOCK_T + tl.arange(0, BLOCK_T)
    dd = d_block * BLOCK_D + tl.arange(0, BLOCK_D)
    acc = spatial_product(p_ptr, dmix_ptr, D, m, rows, dd, S, D, True, BLOCK_T, BLOCK_D, BLOCK_K, PREC)
    _store_du(acc, zpre_ptr, mask_ptr, dzpre_ptr, m, rows, dd, S, D, ZW, ACT, HAS_MASK)


# ---- dynamic contextualizer: mix(U) = norm(C [⊙ P]) · U, C the cosines of U's rows ----
_SCORES_BWD_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_D": bd}, num_warps=w, num_stages=st)
    for bt, bd, w, st in ((32, 64, 4, 2), (64, 64, 8, 2), (16, 64, 4, 2), (32, 32, 4, 2), (16, 32, 4, 2),
                          (64, 64, 8, 3), (64, 128, 8, 3))
]


@triton.autotune(configs=tunable(_SCORES_BWD_CONFIGS), key=["S", "D", "ZW", "NB", "NORM", "COUPLED"],
                 reset_to_zero=["rho_ptr", "dp_ptr", "dtau_ptr"])
@triton.jit(do_not_specialize=["NB"])
def _dynamic_scores_backward_kernel(
    z_ptr, dmix_ptr, p_ptr, tau_ptr, mask_ptr, nt_ptr, dc_ptr, dct_ptr, inv_ptr, rho_ptr, dp_ptr, dtau_ptr,
    S, D, ZW, eps, NB, HAS_MASK: tl.constexpr, NORM: tl.constexpr, COUPLED: tl.constexpr, PREC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Per (split, BLOCK_T query rows): recompute the cosines C and N = norm(C [⊙ P]) as the forward
    does (``cosine_similarities``, ``normalize_similarities``), take dN = d mix(U) · Uᵀ in the same
    sweep over d, and write, in the compute dtype and laid out for the next kernel's row-major
    loads: Nᵀ with its rows scaled by the norms n = max(‖u‖, eps) (nt[k, t] = N[t, k] · n_k), and
    dC (through the normalisation and P) and dCᵀ with their columns scaled by inv = 1 / n (so that
    (dC + dCᵀ) Û = (dc + dct) U); and inv. Accumulates
    ρ = rowsum((dC + dCᵀ) ⊙ C), dP (coupled) and dτ (softmax) by atomics."""
    m, t_block = split_rows(S, BLOCK_T)
    rows = t_block * BLOCK_T + tl.arange(0, BLOCK_T)
    keys = tl.arange(0, BLOCK_S)
    key_in = keys < S
    row_in = rows < S
    base = m.to(tl.int64) * S
    a = tl.zeros((BLOCK_T, BLOCK_S), dtype=tl.float32)
    dn = tl.zeros((BLOCK_T, BLOCK_S), dtype=tl.float32)
    sq_r = tl.zeros((BLOCK_T,), dtype=tl.float32)
    sq_k = tl.zeros((BLOCK_S,), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + tl.arange(0, BLOCK_D)
        d_in = (dd < D)[None, :]
        u_r = tl.load(z_ptr + (base + rows)[:, None] * ZW + dd[None, :], mask=row_in[:, None] & d_in, other=0.0)
        u_k = tl.load(z_ptr + (base + keys)[:, None] * ZW + dd[None, :], mask=key_in[:, None] & d_in, other=0.0)
        g_r = tl.load(dmix_ptr + (base + rows)[:, None] * D + dd[None, :], mask=row_in[:, None] & d_in, other=0.0)
        a = tl.dot(u_r, tl.trans(u_k), a, input_precision=PREC)
        dn = tl.dot(g_r, tl.trans(u_k), dn, input_precision=PREC)
        sq_r += tl.sum(u_r.to(tl.float32) * u_r.to(tl.float32), axis=1)
        sq_k += tl.sum(u_k.to(tl.float32) * u_k.to(tl.float32), axis=1)
    inv_r = 1.0 / tl.maximum(tl.sqrt(sq_r), eps)
    norm_k = tl.maximum(tl.sqrt(sq_k), eps)
    inv_k = 1.0 / norm_k
    cos = a * inv_r[:, None] * inv_k[None, :]
    pair = row_in[:, None] & key_in[None, :]
    a = cos
    if COUPLED:
        p = tl.load(p_ptr + rows[:, None] * S + keys[None, :], mask=pair, other=0.0).to(tl.float32)
        a = cos * p
    if NORM == 0:  # N = A / max(Σ|A|, eps)
        s = tl.sum(tl.abs(a), axis=1)
        sc = tl.maximum(s, eps)
        n = a / sc[:, None]
        sign = tl.where(a > 0, 1.0, tl.where(a < 0, -1.0, 0.0))
        corr = tl.where(s > eps, tl.sum(dn * a, axis=1) / (sc * sc), 0.0)
        da = dn / sc[:, None] - sign * corr[:, None]
    elif NORM == 1:  # N = softmax(A / τ) over real keys
        key_real = key_in
        if HAS_MASK:
            key_real = key_in & (tl.load(mask_ptr + base + keys, mask=key_in, other=0) != 0)
        tau = tl.load(tau_ptr).to(tl.float32)
        logits = tl.where(key_real[None, :], a / tau, -3.0e38)
        logits = tl.where(key_in[None, :], logits, float("-inf"))
        e = tl.exp(logits - tl.max(logits, axis=1)[:, None])
        n = e / tl.sum(e, axis=1)[:, None]
        dl = n * (dn - tl.sum(dn * n, axis=1)[:, None])
        dl = tl.where(pair, dl, 0.0)
        da = dl / tau
        # Σ dl ⊙ A with A centred on its N-weighted row mean (Σ_k dl = 0, less cancellation)
        centred = tl.where(pair, a - tl.sum(n * a, axis=1)[:, None], 0.0)
        tl.atomic_add(dtau_ptr, -tl.sum(tl.sum(dl * centred, axis=1), axis=0) / (tau * tau))
    elif NORM == 2:
        n = a
        da = dn
    else:  # N = A / (Σ A + eps)
        t = tl.sum(a, axis=1) + eps
        n = a / t[:, None]
        da = dn / t[:, None] - (tl.sum(dn * a, axis=1) / (t * t))[:, None]
    da = tl.where(pair, da, 0.0)
    dc = da
    if COUPLED:
        tl.atomic_add(dp_ptr + rows[:, None] * S + keys[None, :], da * cos, mask=pair)
        dc = da * p
    offs = (base + rows)[:, None] * S + keys[None, :]
    offs_t = (base + keys)[None, :] * S + rows[:, None]
    tl.store(nt_ptr + offs_t, (n * norm_k[None, :]).to(nt_ptr.dtype.element_ty), mask=pair)
    tl.store(dc_ptr + offs, (dc * inv_k[None, :]).to(dc_ptr.dtype.element_ty), mask=pair)
    tl.store(dct_ptr + offs_t, (dc * inv_r[:, None]).to(dct_ptr.dtype.element_ty), mask=pair)
    tl.store(inv_ptr + base + rows, inv_r, mask=row_in)
    w = dc * cos
    tl.atomic_add(rho_ptr + base + rows, tl.sum(w, axis=1), mask=row_in)
    tl.atomic_add(rho_ptr + base + keys, tl.sum(w, axis=0), mask=key_in)


_DYNAMIC_BWD_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_D": bd, "BLOCK_K": bk}, num_warps=w, num_stages=st)
    for bt, bd, bk, w, st in ((64, 256, 32, 8, 3), (64, 128, 64, 4, 3), (128, 128, 32, 8, 3), (128, 256, 32, 8, 2),
                              (64, 256, 64, 8, 2), (32, 64, 32, 4, 2), (64, 128, 64, 4, 2), (64, 128, 32, 4, 3))
]


@triton.autotune(configs=tunable(_DYNAMIC_BWD_CONFIGS), key=["S", "D", "ZW", "NB"])
@triton.jit(do_not_specialize=["NB"])
def _dynamic_mix_backward_kernel(
    z_ptr, dmix_ptr, nt_ptr, dc_ptr, dct_ptr, inv_ptr, rho_ptr, zpre_ptr, mask_ptr, dzpre_ptr, S, D, ZW, eps, NB,
    ACT: tl.constexpr, HAS_MASK: tl.constexpr, PREC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """dU = Nᵀ · d mix(U) + the cosines' backward: with Û = U · inv and dÛ = (dC + dCᵀ) Û,
    dU_t = inv_t (dÛ_t − Û_t ρ_t) where ‖u_t‖ > eps (ρ_t = Û_t · dÛ_t), inv_t dÛ_t where the norm
    was clamped. Both products share one accumulator, U straight from memory: with nt's rows scaled
    by n_t = 1 / inv_t and dc, dct's columns by inv,
    dU_t = inv_t · ([nt | dc + dct]_t · [d mix(U) ; U] − [‖u_t‖ > eps] · Û_t ρ_t). Then act' and the mask."""
    m, t_block, d_block = split_tile(S, D, BLOCK_T, BLOCK_D)
    rows = t_block * BLOCK_T + tl.arange(0, BLOCK_T)
    dd = d_block * BLOCK_D + tl.arange(0, BLOCK_D)
    kk = tl.arange(0, BLOCK_K)
    row_in = rows < S
    d_in = dd < D
    base = m.to(tl.int64) * S
    acc = tl.zeros((BLOCK_T, BLOCK_D), dtype=tl.float32)
    for k0 in range(0, S, BLOCK_K):
        keys = k0 + kk
        k_in = keys < S
        rk = row_in[:, None] & k_in[None, :]
        offs = (base + rows)[:, None] * S + keys[None, :]
        nt = tl.load(nt_ptr + offs, mask=rk, other=0.0)
        dcs = tl.load(dc_ptr + offs, mask=rk, other=0.0).to(tl.float32) + tl.load(dct_ptr + offs, mask=rk, other=0.0)
        kd = k_in[:, None] & d_in[None, :]
        g = tl.load(dmix_ptr + (base + keys)[:, None] * D + dd[None, :], mask=kd, other=0.0)
        u = tl.load(z_ptr + (base + keys)[:, None] * ZW + dd[None, :], mask=kd, other=0.0)
        acc = tl.dot(nt.to(g.dtype), g, acc, input_precision=PREC)
        acc = tl.dot(dcs.to(u.dtype), u, acc, input_precision=PREC)
    inv_r = tl.load(inv_ptr + base + rows, mask=row_in, other=0.0)
    rho = tl.load(rho_ptr + base + rows, mask=row_in, other=0.0)
    u_r = tl.load(z_ptr + (base + rows)[:, None] * ZW + dd[None, :], mask=row_in[:, None] & d_in[None, :],
                  other=0.0).to(tl.float32)
    proj = tl.where(inv_r < 1.0 / eps, rho * inv_r, 0.0)
    du = inv_r[:, None] * (acc - u_r * proj[:, None])
    _store_du(du, zpre_ptr, mask_ptr, dzpre_ptr, m, rows, dd, S, D, ZW, ACT, HAS_MASK)
