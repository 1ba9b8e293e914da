"""The contextualizer and the gate (SPEC.md section 3.2), forward and backward: G ⊙ mix(U).

Matches the lines of :func:`aveyb.model.layers.layer_forward` between the two GEMMs: G ⊙
:func:`~aveyb.model.layers.contextualize` (from :func:`~aveyb.model.layers.static_mix` and
:func:`~aveyb.model.layers.dynamic_mix`). Z = [U | G | Zb]
(R = M·S rows: M splits of S rows; width ZW = E·d) is the activated enricher output, U's padded rows
already zero.

Forward, in place on Z (:func:`mix_and_gate`): G <- G ⊙ mix(U), so that Z[:, d:] becomes the
fuser's input [G ⊙ mix(U) ; Zb] with no concatenation.

* ``_static_mix_kernel`` -- mix(U) = P · U, tiled, the gate in the epilogue;
* ``_dynamic_mix_kernel`` -- mix(U) = norm(C [⊙ P]) · U with C the cosines of U's rows: per block
  of rows, the norms and U_rows · U_keysᵀ in fp32, the cosines ⊙ P (coupled), the normalisation
  (``sum``, ``softmax`` with τ and masked keys, ``none``, ``signed_sum``) in registers, then
  norm(A) · U. Neither U Uᵀ nor A reaches memory.

Backward (:func:`mix_and_gate_backward`, the training path's): from dF = ∂L/∂[G ⊙ mix(U) ; Zb] to
∂L/∂Zpre through act' (the forward keeps Zpre and mix(U)): ``_gate_backward_kernel`` for G and Zb,
then ``_static_mix_backward_kernel``, or ``_dynamic_scores_backward_kernel`` and
``_dynamic_mix_backward_kernel`` (the derivation is in docs/kernels.md, "Training path"). No S × S
matrix of the forward is stored; the dynamic backward writes Nᵀ, dC and dCᵀ per split (M·S² values
each in the compute dtype) and reads them back once.

Every kernel here runs split-major (:func:`split_tile`): the blocks that share a split's U run side
by side and read it from L2.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from aveyb.kernels._triton_utils import (
    ACT_IDS,
    ELEMENTWISE_CONFIGS,
    _keep_rows,
    act_fn,
    act_grad,
    dot_precision,
    elementwise_grid,
    mask_arg,
)
from aveyb.kernels.tuning import size_bucket, tunable

NORM_IDS = {"sum": 0, "softmax": 1, "none": 2, "signed_sum": 3}


# ---- program placement and shared pieces ----
@triton.jit
def split_tile(S, D, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    """(split, row block, column block) of this program in a 1-D grid of
    M · cdiv(S, BLOCK_T) · cdiv(D, BLOCK_D) programs, split-major. The blocks of one split run
    side by side, so the split's U (and, backward, its S × S matrices) is read from memory once and
    then served from L2. With the split as the fastest grid axis, every block re-read it a wave later."""
    pid = tl.program_id(0)
    n_d = tl.cdiv(D, BLOCK_D)
    per_split = tl.cdiv(S, BLOCK_T) * n_d
    m = pid // per_split
    local = pid % per_split
    return m, local // n_d, local % n_d


@triton.jit
def split_rows(S, BLOCK_T: tl.constexpr):
    """:func:`split_tile` for kernels without column blocks: (split, row block)."""
    pid = tl.program_id(0)
    n_t = tl.cdiv(S, BLOCK_T)
    return pid // n_t, pid % n_t


def split_grid(n_split: int, split_size: int, width: int | None = None):
    """The launch grid of kernels that place their programs with :func:`split_tile` (``width`` None:
    no column blocks, BLOCK_D then only tiles the loop over d inside the kernel)."""
    def grid(meta):
        cols = 1 if width is None else triton.cdiv(width, meta["BLOCK_D"])
        return (n_split * triton.cdiv(split_size, meta["BLOCK_T"]) * cols,)
    return grid


@triton.jit
def _gate_store(z_ptr, save_ptr, m, rows, dd, mixed, S, D, ZW, SAVE: tl.constexpr):
    """Z[m, rows, D + dd] = G[m, rows, dd] * mixed, in place (G sits where its product goes);
    SAVE: also mix(U) itself into save (M·S, D), which the training path's backward needs."""
    ok = (rows < S)[:, None] & (dd < D)[None, :]
    r64 = m.to(tl.int64) * S + rows
    offs = r64[:, None] * ZW + D + dd[None, :]
    g = tl.load(z_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    tl.store(z_ptr + offs, (g * mixed).to(z_ptr.dtype.element_ty), mask=ok)
    if SAVE:
        tl.store(save_ptr + r64[:, None] * D + dd[None, :], mixed.to(save_ptr.dtype.element_ty), mask=ok)


@triton.jit
def spatial_product(p_ptr, v_ptr, V_STRIDE, m, rows, dd, S, D, TRANS_P: tl.constexpr, BLOCK_T: tl.constexpr,
                    BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr, PREC: tl.constexpr):
    """(P · V)[rows, dd] of split m in fp32, or (Pᵀ · V) with TRANS_P, for P (S, S) and V the split's
    (S, D) rows ``V_STRIDE`` apart: the static mix P · U and its backward Pᵀ · d mix(U). Pᵀ is
    loaded as P's (k, rows) block and transposed in registers, so both read P row-major."""
    kk = tl.arange(0, BLOCK_K)
    base = m.to(tl.int64) * S
    acc = tl.zeros((BLOCK_T, BLOCK_D), dtype=tl.float32)
    for k0 in range(0, S, BLOCK_K):
        k_ok = (k0 + kk) < S
        if TRANS_P:
            p = tl.trans(tl.load(p_ptr + (k0 + kk)[:, None] * S + rows[None, :],
                                 mask=k_ok[:, None] & (rows < S)[None, :], other=0.0))
        else:
            p = tl.load(p_ptr + rows[:, None] * S + (k0 + kk)[None, :], mask=(rows < S)[:, None] & k_ok[None, :],
                        other=0.0)
        v = tl.load(v_ptr + (base + k0 + kk)[:, None] * V_STRIDE + dd[None, :], mask=k_ok[:, None] & (dd < D)[None, :],
                    other=0.0)
        acc = tl.dot(p, v, acc, input_precision=PREC)
    return acc


# ---- forward ----
_STATIC_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_D": bd, "BLOCK_K": bk}, num_warps=w, num_stages=st)
    for bt, bd, bk, w, st in ((64, 128, 64, 4, 3), (128, 128, 64, 8, 3), (64, 64, 64, 4, 3),
                              (128, 64, 64, 4, 3), (64, 128, 32, 4, 4), (32, 128, 32, 4, 3), (256, 128, 64, 8, 3))
]
# Timed config by config on an H100, 64-row tiles with 4 warps win at 8 x 2,048 (37.8 us) and
# whole-split 256-row tiles at 8 x 32,768 (542 against 591 us for the next best): few splits want
# small programs spread over the SMs, many want fewer re-reads of U. NB, the autotuning key's
# split-count bucket, lets each length keep its own.


@triton.autotune(configs=tunable(_STATIC_CONFIGS), key=["S", "D", "ZW", "NB"], restore_value=["z_ptr"])
@triton.jit(do_not_specialize=["NB"])
def _static_mix_kernel(
    z_ptr, p_ptr, save_ptr, S, D, ZW, NB, SAVE: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr, PREC: tl.constexpr,
):
    """G[m, rows, dd] <- G * (P @ U)[rows, dd], U = Z[..., :d]   (aveyb.model.layers.static_mix, then the gate)."""
    m, t_block, d_block = split_tile(S, D, BLOCK_T, BLOCK_D)
    rows = t_block * BLOCK_T + tl.arange(0, BLOCK_T)
    dd = d_block * BLOCK_D + tl.arange(0, BLOCK_D)
    acc = spatial_product(p_ptr, z_ptr, ZW, m, rows, dd, S, D, False, BLOCK_T, BLOCK_D, BLOCK_K, PREC)
    _gate_store(z_ptr, save_ptr, m, rows, dd, acc, S, D, ZW, SAVE)


# Software-pipelined, this kernel gave wrong and run-to-run different results for thousands of
# elements under Triton 3.6 on an H100 (wgmma) while the squared norms were summed from the tiles
# loaded for the U_rows · U_keysᵀ product inside that product's loop (docs/kernels.md,
# "Pipelined configs that compute wrong values"). With the norms summed in a loop of
# their own that stays unpipelined, every pipelined config repeats bitwise and matches the fp32
# reference to bf16 rounding, and the fastest (128 x 64 tiles, 3 stages) beats the best one-stage
# config of the earlier form by 15-16% (57.8 against 68.2 us at 16,384 rows, 108.8 against 129.8 at
# 32,768). tests/kernels/test_mix.py checks
# every config here.
_DYNAMIC_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_D": bd}, num_warps=w, num_stages=st)
    for bt, bd, w, st in ((128, 64, 8, 3), (128, 128, 8, 2), (128, 64, 8, 2), (64, 64, 4, 2), (128, 64, 8, 1),
                          (64, 128, 8, 1), (32, 64, 4, 3), (64, 32, 4, 1), (16, 32, 4, 1))
]


@triton.autotune(configs=tunable(_DYNAMIC_CONFIGS), key=["S", "D", "ZW", "NB", "NORM", "COUPLED"],
                 restore_value=["z_ptr"])
@triton.jit(do_not_specialize=["NB"])
def _dynamic_mix_kernel(
    z_ptr, p_ptr, tau_ptr, mask_ptr, save_ptr, S, D, ZW, eps, NB, SAVE: tl.constexpr,
    HAS_MASK: tl.constexpr, NORM: tl.constexpr, COUPLED: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr, PREC: tl.constexpr,
):
    """G[m, rows] <- G * (norm(Â [⊙ P]) @ U)[rows]   (aveyb.model.layers.dynamic_mix + gate).

    One program per (split, BLOCK_T rows), placed split-major, sweeps over d. The first two sum the
    squared norms and accumulate U_rows · U_keysᵀ in fp32, giving the cosines
    Â = inv_t · (U Uᵀ)_tk · inv_k with inv = 1 / max(‖U‖, eps) as the reference normalises; the
    normalisation happens in registers. The last multiplies the normalised rows of A by U chunk
    by chunk and gates G in place. Neither U Uᵀ nor A ever reaches memory. NB, the split-count
    bucket, only keys the autotuner: short and long inputs want different tiles.
    """
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
    for d0 in tl.range(0, D, BLOCK_D, num_stages=1):  # unpipelined: see _DYNAMIC_CONFIGS
        dd = d0 + tl.arange(0, BLOCK_D)
        u_r = tl.load(z_ptr + row_offs + dd[None, :], mask=row_in[:, None] & (dd < D)[None, :], other=0.0)
        u_k = tl.load(z_ptr + key_offs + dd[None, :], mask=key_in[:, None] & (dd < D)[None, :], other=0.0)
        sq_r += tl.sum(u_r.to(tl.float32) * u_r.to(tl.float32), axis=1)
        sq_k += tl.sum(u_k.to(tl.float32) * u_k.to(tl.float32), axis=1)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + tl.arange(0, BLOCK_D)
        u_r = tl.load(z_ptr + row_offs + dd[None, :], mask=row_in[:, None] & (dd < D)[None, :], other=0.0)
        u_k = tl.load(z_ptr + key_offs + dd[None, :], mask=key_in[:, None] & (dd < D)[None, :], other=0.0)
        a = tl.dot(u_r, tl.trans(u_k), a, input_precision=PREC)
    inv_r = 1.0 / tl.maximum(tl.sqrt(sq_r), eps)
    inv_k = 1.0 / tl.maximum(tl.sqrt(sq_k), eps)
    a = a * inv_r[:, None] * inv_k[None, :]
    if COUPLED:
        a = a * tl.load(p_ptr + rows[:, None] * S + keys[None, :], mask=row_in[:, None] & key_in[None, :],
                        other=0.0).to(tl.float32)
    if NORM == 0:
        a = a / tl.maximum(tl.sum(tl.abs(a), axis=1), eps)[:, None]
    elif NORM == 1:
        key_real = key_in
        if HAS_MASK:
            key_real = key_in & (tl.load(mask_ptr + base + keys, mask=key_in, other=0) != 0)
        logits = a / tl.load(tau_ptr).to(tl.float32)
        logits = tl.where(key_real[None, :], logits, -3.0e38)
        logits = tl.where(key_in[None, :], logits, float("-inf"))
        e = tl.exp(logits - tl.max(logits, axis=1)[:, None])
        a = e / tl.sum(e, axis=1)[:, None]
    elif NORM == 3:
        a = a / (tl.sum(a, axis=1) + eps)[:, None]
    a = a.to(z_ptr.dtype.element_ty)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + tl.arange(0, BLOCK_D)
        u = tl.load(z_ptr + key_offs + dd[None, :], mask=key_in[:, None] & (dd < D)[None, :], other=0.0)
        _gate_store(z_ptr, save_ptr, m, rows, dd, tl.dot(a, u, input_precision=PREC), S, D, ZW, SAVE)


def mix_and_gate(z: torch.Tensor, mask: torch.Tensor | None, kind: str, width: int, norm: str = "sum",
                 eps: float = 1e-12, spatial_proj: torch.Tensor | None = None, tau: torch.Tensor | None = None,
                 save: torch.Tensor | None = None) -> None:
    """In place on the activated Z = [U | G | Zb] (M, S, E·d): G <- G ⊙ mix(U).

    Matches G ⊙ :func:`aveyb.model.layers.contextualize` (U, mask). U's padded rows are
    already zero (the enricher did it). ``save`` (M·S, d), if given, receives mix(U) (training).
    """
    n_split, split_size, zw = z.shape
    if n_split == 0:
        return
    prec = dot_precision(z.dtype)
    if kind == "static":
        p = spatial_proj.to(z.dtype).contiguous()
        _static_mix_kernel[split_grid(n_split, split_size, width)](
            z, p, z if save is None else save, split_size, width, zw, size_bucket(n_split), SAVE=save is not None,
            PREC=prec)
        return
    coupled = kind == "coupled"
    p = spatial_proj.to(torch.float32).contiguous() if coupled else z
    tau_t = tau.detach().float().contiguous() if (norm == "softmax" and tau is not None) else z
    mask_u8 = mask_arg(mask, z)
    _dynamic_mix_kernel[split_grid(n_split, split_size)](
        z, p, tau_t, mask_u8, z if save is None else save, split_size, width, zw, eps, size_bucket(n_split),
        SAVE=save is not None,
        HAS_MASK=mask is not None, NORM=NORM_IDS[norm], COUPLED=coupled,
        BLOCK_S=max(16, triton.next_power_of_2(split_size)), PREC=prec,
    )


# ---- backward: the gate, and act' ----
@triton.autotune(configs=tunable(ELEMENTWISE_CONFIGS), key=["FW", "D"])
@triton.jit
def _gate_backward_kernel(df_ptr, zpre_ptr, mixu_ptr, dzpre_ptr, dmix_ptr, R, FW, D, ZW, ACT: tl.constexpr,
                          BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    """From dF = d[G ⊙ mix(U) ; Zb] (R, FW): dZpre for G and Zb (through act'), and
    d mix(U) = dF_G ⊙ G for the mix's backward (``layer_forward``'s gate and concatenation)."""
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


# ---- backward: static mix, mix(U) = P · U ----
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


# ---- backward: dynamic mix, mix(U) = norm(C [⊙ P]) · U, C the cosines of U's rows ----
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


def _mix_backward(z, dmix, zpre, mask, dzpre, proj, tau, kind, act, norm, eps, split):
    """Writes dZpre_U; returns (dP or None, dτ or None)."""
    rows, zw = z.shape
    width = dmix.shape[1]
    n_split = rows // split
    mask_u8 = mask_arg(mask, z)
    prec = dot_precision(z.dtype)
    nb = size_bucket(n_split)  # the autotuning key's size class
    if kind == "static":
        _static_mix_backward_kernel[split_grid(n_split, split, width)](
            dmix, proj.to(z.dtype).contiguous(), zpre, mask_u8, dzpre, split, width, zw, nb, ACT=ACT_IDS[act],
            HAS_MASK=mask is not None, PREC=prec)
        u = z[:, :width].view(n_split, split, width)
        dproj = torch.bmm(dmix.view(n_split, split, width), u.transpose(1, 2)).sum(0, dtype=torch.float32)  # dP = Σ dmix Uᵀ
        return dproj, None
    coupled = kind == "coupled"
    dev = z.device
    n_t = torch.empty(n_split, split, split, device=dev, dtype=z.dtype)
    dc, dc_t = torch.empty_like(n_t), torch.empty_like(n_t)
    inv = torch.empty(rows, device=dev, dtype=torch.float32)
    rho = torch.zeros(rows, device=dev, dtype=torch.float32)
    dproj = torch.zeros(split, split, device=dev, dtype=torch.float32) if coupled else rho
    dtau = torch.zeros(1, device=dev, dtype=torch.float32) if norm == "softmax" else rho
    p = proj.float().contiguous() if coupled else z
    tau_t = tau.detach().float().contiguous() if norm == "softmax" else z
    _dynamic_scores_backward_kernel[split_grid(n_split, split)](
        z, dmix, p, tau_t, mask_u8, n_t, dc, dc_t, inv, rho, dproj, dtau, split, width, zw, eps, nb,
        HAS_MASK=mask is not None, NORM=NORM_IDS[norm], COUPLED=coupled, PREC=prec,
        BLOCK_S=max(16, triton.next_power_of_2(split)))
    _dynamic_mix_backward_kernel[split_grid(n_split, split, width)](
        z, dmix, n_t, dc, dc_t, inv, rho, zpre, mask_u8, dzpre, split, width, zw, eps, nb, ACT=ACT_IDS[act],
        HAS_MASK=mask is not None, PREC=prec)
    return (dproj if coupled else None), (dtau.reshape(tau.shape) if norm == "softmax" else None)


def mix_and_gate_backward(df, z, zpre, mixu, mask, proj, tau, kind, act, norm, eps, split):
    """The backward of act, the U mask, the mix and the gate: from dF = ∂L/∂[G ⊙ mix(U) ; Zb] (R, FW)
    to dZpre = ∂L/∂Zpre (R, ZW), given Zpre, Z (gated in place) and mix(U) of the forward
    (:func:`mix_and_gate` with ``save``). Returns (dZpre, dP or None, dτ or None)."""
    rows, zw = zpre.shape
    width = mixu.shape[1]
    dzpre = torch.empty_like(zpre)
    dmix = torch.empty(rows, width, device=zpre.device, dtype=zpre.dtype)
    _gate_backward_kernel[elementwise_grid(rows, zw - width)](
        df, zpre, mixu, dzpre, dmix, rows, zw - width, width, zw, ACT=ACT_IDS[act])
    dproj, dtau = _mix_backward(z, dmix, zpre, mask, dzpre, proj, tau, kind, act, norm, eps, split)
    return dzpre, dproj, dtau
