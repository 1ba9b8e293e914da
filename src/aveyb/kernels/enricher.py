"""The layer's two GEMMs with their elementwise work fused into prologue statistics and epilogues.

Enricher (SPEC 3.1): Z = act(W_e · RMSNorm(X) + b_e) = U | G | Zb. RMSNorm's gain g is folded into
the weight (W_e · diag(g), cached per layer) and its row scale r = rsqrt(mean(x²) + ε) is applied
to the accumulator, so the GEMM reads the raw layer input and the normalised X is never written.
The epilogue adds the bias, applies the activation once, zeroes U on padded rows and writes Z
(R, E·d). The mix kernel then overwrites G with G ⊙ mix(U) in place, so that Z[:, d:] is the
fuser's input [G ⊙ mix(U) ; Zb] without any concatenation.

Fuser (SPEC 3.3): out = W_f · Z[:, d:] + b_f + α · X. The epilogue adds bias and residual and
writes, per row and column tile, the partial sum of squares of the (rounded) output: the next
layer's enricher sums those partials to get its RMSNorm scale, so no pass re-reads X for it.

Two Triton implementations of each: persistent TMA kernels (Hopper or newer, 16-bit data, d a
multiple of 128), and pointer-based tiled kernels for everything else (fp32, small d, older GPUs).
On Hopper the enricher runs by default as the warp-specialised Gluon kernel of ``gluon_gemm``
(``enricher_mode``); the fuser can (``fuser_mode``).
"""

from __future__ import annotations

import os
import warnings
import weakref

import torch
import triton
import triton.language as tl
from torch.optim.optimizer import register_optimizer_step_post_hook

from aveyb.kernels.tuning import dot_precision, env_choice, mask_arg, tunable

_GEMM_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}, num_warps=w, num_stages=st)
    for bm, bn, bk, w, st in ((128, 256, 64, 8, 3), (128, 128, 64, 8, 4), (128, 128, 64, 4, 4),
                              (256, 128, 64, 8, 3), (64, 256, 64, 4, 4), (128, 64, 64, 4, 4),
                              (64, 64, 32, 4, 3))
]


@triton.jit
def act_fn(x, ACT: tl.constexpr):
    """exact GELU (0), tanh GELU (1), ReLU (2), SiLU (3), as in ``aveyb.model.layers.ACT_FNS``."""
    if ACT == 0:
        y = 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))
    elif ACT == 1:
        inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        y = 0.5 * x * (1.0 + (2.0 * tl.sigmoid(2.0 * inner) - 1.0))
    elif ACT == 2:
        y = tl.maximum(x, 0.0)
    else:
        y = x * tl.sigmoid(x)
    return y


@triton.jit
def erf_fast(x):
    """erf to 1.5e-7 absolute (Abramowitz & Stegun 7.1.26): about half the instructions of
    libdevice's erff, for the 16-bit TMA path whose epilogue is bound by this arithmetic. The
    error is far below bf16/fp16 resolution; fp32 runs use the exact ``tl.math.erf``."""
    ax = tl.abs(x)
    t = tl.fdiv(1.0, 1.0 + 0.3275911 * ax, ieee_rounding=False)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    y = 1.0 - poly * tl.exp(-ax * ax)
    return tl.where(x < 0, -y, y)


@triton.jit
def tanh_approx(x):
    """The hardware tanh (one MUFU instruction, max relative error 2^-11)."""
    return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True,
                                     pack=1)


@triton.jit
def act_fast(x, ACT: tl.constexpr, FAST: tl.constexpr):
    """:func:`act_fn` for the 16-bit TMA path. FAST=1: exact GELU through :func:`erf_fast`;
    FAST=2: both GELUs as the tanh form through the hardware tanh (see ``enricher_mode``)."""
    if FAST == 2 and ACT <= 1:
        # 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))) in five FMA-pipe operations and one MUFU one
        half = 0.5 * x
        t = tanh_approx(x * (0.7978845608028654 + 0.035677408136300125 * (x * x)))
        y = half + half * t
    elif ACT == 0:
        y = 0.5 * x * (1.0 + erf_fast(x * 0.7071067811865476))
    else:
        y = act_fn(x, ACT)
    return y


@triton.jit
def _grouped_tile(tile, num_m, num_n, GROUP_M: tl.constexpr):
    """(row tile, column tile) of linear tile index ``tile`` in grouped order: GROUP_M row tiles
    share each column tile while it sits in L2."""
    per_group = GROUP_M * num_n
    first_m = (tile // per_group) * GROUP_M
    group_size = tl.minimum(num_m - first_m, GROUP_M)
    return first_m + (tile % per_group) % group_size, (tile % per_group) // group_size


@triton.jit
def _tile_ids(R, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """This program's output tile (one tile per program)."""
    return _grouped_tile(tl.program_id(0), tl.cdiv(R, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M)


@triton.jit
def _mainloop(a_ptr, w_ptr, R, N, K, LDA, pid_m, pid_n, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              BLOCK_K: tl.constexpr, PREC: tl.constexpr):
    """acc = A[rows] · W[cols]ᵀ for A (R, K) with row stride LDA and W (N, K) row-major, in fp32."""
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    kk = tl.arange(0, BLOCK_K)
    # Out-of-range rows/cols read a valid row instead (their results are never stored).
    a_rows = (rows % R).to(tl.int64)
    w_rows = (cols % N).to(tl.int64)
    a_ptrs = a_ptr + a_rows[:, None] * LDA + kk[None, :]
    w_ptrs = w_ptr + w_rows[None, :] * K + kk[:, None]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_ok = (k0 + kk) < K
        a = tl.load(a_ptrs, mask=k_ok[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=k_ok[:, None], other=0.0)
        acc = tl.dot(a, w, acc, input_precision=PREC)
        a_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
    return acc, rows, cols


@triton.jit
def _row_scale(ss_ptr, rows, row_ok, NT, SS_STRIDE, K, eps):
    """RMSNorm's 1 / sqrt(mean(x²) + eps) per row, from NT partial sums of squares."""
    r64 = rows.to(tl.int64)
    ss = tl.zeros(rows.shape, dtype=tl.float32)
    for t in range(NT):
        ss += tl.load(ss_ptr + r64 * SS_STRIDE + t, mask=row_ok, other=0.0)
    return tl.math.rsqrt(ss / K + eps)


@triton.jit
def _enrich_epilogue(acc, scale, bias, keep, cols, K, ACT: tl.constexpr, FAST: tl.constexpr,
                     HAS_MASK: tl.constexpr):
    """act(acc · r + b), with U's columns (the first d = K) zeroed on padded rows (HAS_MASK; rows
    past the end are never stored)."""
    if FAST > 0:
        y = act_fast(acc * scale[:, None] + bias[None, :], ACT, FAST)
    else:
        y = act_fn(acc * scale[:, None] + bias[None, :], ACT)
    if HAS_MASK:
        y = tl.where(keep[:, None] | (cols >= K)[None, :], y, 0.0)
    return y


@triton.jit
def _keep_rows(mask_ptr, rows, row_ok, HAS_MASK: tl.constexpr):
    keep = row_ok
    if HAS_MASK:
        keep = keep & (tl.load(mask_ptr + rows.to(tl.int64), mask=row_ok, other=0) != 0)
    return keep


@triton.autotune(configs=tunable(_GEMM_CONFIGS), key=["R_BUCKET", "N", "K"])
@triton.jit
def _enricher_kernel(
    x_ptr, w_ptr, b_ptr, ss_ptr, mask_ptr, z_ptr,
    R, N, K, NT, SS_STRIDE, R_BUCKET, eps,
    HAS_MASK: tl.constexpr, ACT: tl.constexpr, PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """Z = act(r · (X · (W_e diag g)ᵀ) + b_e), U zeroed on padded rows; r from NT partial row sums."""
    pid_m, pid_n = _tile_ids(R, N, BLOCK_M, BLOCK_N, GROUP_M)
    acc, rows, cols = _mainloop(x_ptr, w_ptr, R, N, K, K, pid_m, pid_n, BLOCK_M, BLOCK_N, BLOCK_K, PREC)
    row_ok = rows < R
    scale = _row_scale(ss_ptr, rows, row_ok, NT, SS_STRIDE, K, eps)
    bias = tl.load(b_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)
    keep = _keep_rows(mask_ptr, rows, row_ok, HAS_MASK)
    z = _enrich_epilogue(acc, scale, bias, keep, cols, K, ACT, 0, HAS_MASK)
    tl.store(z_ptr + rows.to(tl.int64)[:, None] * N + cols[None, :], z.to(z_ptr.dtype.element_ty),
             mask=row_ok[:, None] & (cols < N)[None, :])


@triton.autotune(configs=tunable(_GEMM_CONFIGS), key=["R_BUCKET", "N", "K"])
@triton.jit
def _fuser_kernel(
    f_ptr, w_ptr, b_ptr, x_ptr, alpha_ptr, out_ptr, ss_ptr,
    R, N, K, LDA, SS_STRIDE, R_BUCKET,
    PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """out = F · W_fᵀ + b_f + α · X; ss[row, pid_n] = Σ_{tile cols} out² (of the stored, rounded out)."""
    pid_m, pid_n = _tile_ids(R, N, BLOCK_M, BLOCK_N, GROUP_M)
    acc, rows, cols = _mainloop(f_ptr, w_ptr, R, N, K, LDA, pid_m, pid_n, BLOCK_M, BLOCK_N, BLOCK_K, PREC)
    row_ok = rows < R
    col_ok = cols < N
    ok = row_ok[:, None] & col_ok[None, :]
    r64 = rows.to(tl.int64)
    offs = r64[:, None] * N + cols[None, :]
    bias = tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    alpha = tl.load(alpha_ptr).to(tl.float32)
    x = tl.load(x_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    out = (acc + bias[None, :] + alpha * x).to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + offs, out, mask=ok)
    sq = tl.where(ok, out.to(tl.float32), 0.0)
    tl.store(ss_ptr + r64 * SS_STRIDE + pid_n, tl.sum(sq * sq, axis=1), mask=row_ok)


@triton.jit
def _row_sumsq_kernel(x_ptr, ss_ptr, R, D, SS_STRIDE, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """ss[row, 0] = Σ_d x² (the first layer's statistics; later layers get them from the fuser)."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    r64 = rows.to(tl.int64)
    total = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + tl.arange(0, BLOCK_D)
        x = tl.load(x_ptr + r64[:, None] * D + dd[None, :], mask=(rows < R)[:, None] & (dd < D)[None, :],
                    other=0.0).to(tl.float32)
        total += tl.sum(x * x, axis=1)
    tl.store(ss_ptr + r64 * SS_STRIDE, total, mask=rows < R)


@triton.jit
def _rms_apply_kernel(x_ptr, ss_ptr, out_ptr, R, D, NT, SS_STRIDE, eps, BLOCK_R: tl.constexpr,
                      BLOCK_D: tl.constexpr):
    """out = x · rsqrt(mean(x²) + eps) per row, the mean from NT partial sums (the cuBLAS enricher's input)."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < R
    scale = _row_scale(ss_ptr, rows, row_ok, NT, SS_STRIDE, D, eps)
    r64 = rows.to(tl.int64)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + tl.arange(0, BLOCK_D)
        ok = row_ok[:, None] & (dd < D)[None, :]
        x = tl.load(x_ptr + r64[:, None] * D + dd[None, :], mask=ok, other=0.0).to(tl.float32)
        tl.store(out_ptr + r64[:, None] * D + dd[None, :], (x * scale[:, None]).to(out_ptr.dtype.element_ty), mask=ok)


# ---- Hopper path: persistent kernels with TMA (tensor-memory-accelerator) loads and stores ----
# One program per SM walks over output tiles; Triton pipelines the flattened loop so the next
# tile's loads run during this tile's epilogue, which is the expensive part here (erf GELU, two
# outputs). The epilogue works on two column halves of the tile to bound register pressure.
def _tma_block_shapes(nargs):
    bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
    nargs["a_desc"].block_shape = [bm, bk]
    nargs["w_desc"].block_shape = [bn, bk]
    for name in ("z_desc", "x_desc", "out_desc"):
        if name in nargs:
            nargs[name].block_shape = [bm, bn // nargs.get("EPI", 2)]


# OCC programs per SM: with 2, one program's epilogue can run while the other's MMAs do. FLAT=False
# keeps the persistent loop nested (in a config lab, the fuser's fastest
# config on an H100 is a nested 128x256 loop with 4 stages, whose flattened form does not fit in
# shared memory). WS (Triton's warp specialisation) stays off: on Hopper it failed to compile or
# was not faster in the same lab.
_TMA_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8, "OCC": occ, "FLAT": flat}, num_warps=w,
                  num_stages=st, pre_hook=_tma_block_shapes)
    for bm, bn, bk, w, st, occ, flat in (
        (128, 256, 64, 8, 3, 1, True), (128, 256, 64, 8, 4, 1, True), (256, 128, 64, 8, 3, 1, True),
        (128, 128, 64, 8, 4, 1, True), (128, 128, 64, 8, 3, 2, True), (128, 128, 64, 4, 3, 2, True),
        (128, 128, 64, 4, 2, 2, True), (128, 256, 128, 8, 2, 1, True), (256, 128, 128, 8, 2, 1, True),
        (128, 256, 64, 8, 4, 1, False))
]

# Smallest BLOCK_N of any fuser config: the row-statistics buffer holds one column per tile of it.
_MIN_BLOCK_N = min(c.kwargs["BLOCK_N"] for c in _GEMM_CONFIGS + _TMA_CONFIGS)


@triton.jit
def _tma_mainloop(a_desc, w_desc, off_m, off_n, k_tiles, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_K: tl.constexpr):
    """acc = A[off_m:+BLOCK_M] · W[off_n:+BLOCK_N]ᵀ in fp32 through TMA loads (zero beyond the edges)."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for ki in range(k_tiles):
        a = a_desc.load([off_m, ki * BLOCK_K])
        w = w_desc.load([off_n, ki * BLOCK_K])
        acc = tl.dot(a, w.T, acc)
    return acc


@triton.jit
def _halves(acc, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    acc = tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N // 2)), (0, 2, 1))
    return tl.split(acc)


@triton.jit
def _enrich_half(acc, scale, keep, b_ptr, z_desc, off_m, off_n, N, K, ACT: tl.constexpr, FAST: tl.constexpr,
                 HAS_MASK: tl.constexpr, HALF: tl.constexpr):
    cols = off_n + tl.arange(0, HALF)
    bias = tl.load(b_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)
    z = _enrich_epilogue(acc, scale, bias, keep, cols, K, ACT, FAST, HAS_MASK)
    z_desc.store([off_m, off_n], z.to(z_desc.dtype))


@triton.autotune(configs=tunable(_TMA_CONFIGS), key=["R_BUCKET", "N", "K"])
@triton.jit
def _enricher_tma_kernel(
    a_desc, w_desc, z_desc, b_ptr, ss_ptr, mask_ptr,
    R, N, K, NT, SS_STRIDE, R_BUCKET, eps,
    HAS_MASK: tl.constexpr, ACT: tl.constexpr, FAST: tl.constexpr, NUM_SMS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, OCC: tl.constexpr,
    WS: tl.constexpr = False, FLAT: tl.constexpr = True, EPI: tl.constexpr = 2,
):
    """:func:`_enricher_kernel` as a persistent TMA kernel (FAST: see :func:`act_fast`); the epilogue
    works on EPI (2 or 4) column slices of the tile."""
    num_m = tl.cdiv(R, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    HALF: tl.constexpr = BLOCK_N // 2
    for tile in tl.range(tl.program_id(0), num_m * num_n, NUM_SMS * OCC, flatten=FLAT, warp_specialize=WS):
        pid_m, pid_n = _grouped_tile(tile, num_m, num_n, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        acc = _tma_mainloop(a_desc, w_desc, off_m, off_n, k_tiles, BLOCK_M, BLOCK_N, BLOCK_K)
        rows = off_m + tl.arange(0, BLOCK_M)
        row_ok = rows < R
        scale = _row_scale(ss_ptr, rows, row_ok, NT, SS_STRIDE, K, eps)
        keep = _keep_rows(mask_ptr, rows, row_ok, HAS_MASK)
        acc0, acc1 = _halves(acc, BLOCK_M, BLOCK_N)
        if EPI == 4:  # quarters: half the epilogue's shared-memory buffer (see _TMA_CONFIGS)
            Q: tl.constexpr = BLOCK_N // 4
            acc00, acc01 = _halves(acc0, BLOCK_M, HALF)
            acc10, acc11 = _halves(acc1, BLOCK_M, HALF)
            _enrich_half(acc00, scale, keep, b_ptr, z_desc, off_m, off_n, N, K, ACT, FAST, HAS_MASK, Q)
            _enrich_half(acc01, scale, keep, b_ptr, z_desc, off_m, off_n + Q, N, K, ACT, FAST, HAS_MASK, Q)
            _enrich_half(acc10, scale, keep, b_ptr, z_desc, off_m, off_n + 2 * Q, N, K, ACT, FAST, HAS_MASK, Q)
            _enrich_half(acc11, scale, keep, b_ptr, z_desc, off_m, off_n + 3 * Q, N, K, ACT, FAST, HAS_MASK, Q)
        else:
            _enrich_half(acc0, scale, keep, b_ptr, z_desc, off_m, off_n, N, K, ACT, FAST, HAS_MASK, HALF)
            _enrich_half(acc1, scale, keep, b_ptr, z_desc, off_m, off_n + HALF, N, K, ACT, FAST, HAS_MASK, HALF)


@triton.jit
def _fuse_half(acc, alpha, b_ptr, x_desc, out_desc, off_m, off_n, N, HALF: tl.constexpr):
    cols = off_n + tl.arange(0, HALF)
    bias = tl.load(b_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)
    x = x_desc.load([off_m, off_n]).to(tl.float32)
    out = (acc + bias[None, :] + alpha * x).to(out_desc.dtype)
    out_desc.store([off_m, off_n], out)
    sq = tl.where((cols < N)[None, :], out.to(tl.float32), 0.0)
    return tl.sum(sq * sq, axis=1)


@triton.autotune(configs=tunable(_TMA_CONFIGS), key=["R_BUCKET", "N", "K"])
@triton.jit
def _fuser_tma_kernel(
    a_desc, w_desc, x_desc, out_desc, b_ptr, alpha_ptr, ss_ptr,
    R, N, K, SS_STRIDE, R_BUCKET,
    NUM_SMS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, OCC: tl.constexpr,
    WS: tl.constexpr = False, FLAT: tl.constexpr = True,
):
    """:func:`_fuser_kernel` as a persistent TMA kernel."""
    num_m = tl.cdiv(R, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    HALF: tl.constexpr = BLOCK_N // 2
    alpha = tl.load(alpha_ptr).to(tl.float32)
    for tile in tl.range(tl.program_id(0), num_m * num_n, NUM_SMS * OCC, flatten=FLAT, warp_specialize=WS):
        pid_m, pid_n = _grouped_tile(tile, num_m, num_n, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        acc = _tma_mainloop(a_desc, w_desc, off_m, off_n, k_tiles, BLOCK_M, BLOCK_N, BLOCK_K)
        acc0, acc1 = _halves(acc, BLOCK_M, BLOCK_N)
        part = _fuse_half(acc0, alpha, b_ptr, x_desc, out_desc, off_m, off_n, N, HALF)
        part += _fuse_half(acc1, alpha, b_ptr, x_desc, out_desc, off_m, off_n + HALF, N, HALF)
        rows = off_m + tl.arange(0, BLOCK_M)
        tl.store(ss_ptr + rows.to(tl.int64) * SS_STRIDE + pid_n, part, mask=rows < R)


_PROPERTIES: dict = {}


def _properties(device):
    """The device's CUDA properties, cached: the torch query is Python-heavy and every layer needs
    the SM count and the compute capability (``python -m aveyb.bench.profile --host``)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _PROPERTIES:
        _PROPERTIES[index] = torch.cuda.get_device_properties(index)
    return _PROPERTIES[index]


def _num_sms(device) -> int:
    return _properties(device).multi_processor_count


def _tma_layout_ok(t: torch.Tensor) -> bool:
    """What a tensor descriptor needs: unit last stride, 16-byte aligned base and row strides."""
    size = t.element_size()
    return (t.stride(-1) == 1 and t.data_ptr() % 16 == 0
            and all(stride * size % 16 == 0 for stride in t.stride()[:-1]))


def use_tma(width: int, *tensors: torch.Tensor) -> bool:
    """The TMA kernels need Hopper or newer, 16-bit data, d a multiple of 128 and TMA-able layouts
    (a strided view such as Z[:, d:] qualifies)."""
    t0 = tensors[0]
    if os.environ.get("AVEYB_GEMM_TMA", "1") == "0" or t0.device.type != "cuda":
        return False
    if t0.dtype not in (torch.bfloat16, torch.float16) or width % 128:
        return False
    if _properties(t0.device).major < 9:
        return False
    return all(_tma_layout_ok(t) for t in tensors)


def _desc(t: torch.Tensor):
    from triton.tools.tensor_descriptor import TensorDescriptor

    return TensorDescriptor(t, list(t.shape), list(t.stride()), [16, 16])  # block shape set per config by _tma_block_shapes


class RowStats:
    """Partial row sums of squares of a layer input: ``parts[:, :count]`` sum to Σ_d x²."""

    def __init__(self, parts: torch.Tensor, count: int):
        self.parts, self.count = parts, count

    @staticmethod
    def buffer(rows: int, width: int, device) -> torch.Tensor:
        return torch.empty(rows, triton.cdiv(width, _MIN_BLOCK_N), device=device, dtype=torch.float32)


def row_stats(x: torch.Tensor) -> RowStats:
    """Σ_d x² per row of ``x`` (R, d), for the first layer."""
    rows, width = x.shape
    parts = RowStats.buffer(rows, width, x.device)
    if rows:
        _row_sumsq_kernel[(triton.cdiv(rows, 32),)](x, parts, rows, width, parts.shape[1], BLOCK_R=32,
                                                    BLOCK_D=min(256, triton.next_power_of_2(width)), num_warps=4)
    return RowStats(parts, 1)


def _bucket(rows: int) -> int:
    """Autotuning key for the row count: short and long inputs may pick different tiles."""
    return min(triton.next_power_of_2(max(rows, 1)), 1 << 16)


_SCALED_WEIGHTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _forget_scaled_weights(optimizer, args, kwargs) -> None:
    _SCALED_WEIGHTS.clear()


# The version counter alone misses optimizer updates: the fused AdamW step (torch's default for
# CUDA parameters in our loops) writes the parameters without bumping it, so an evaluation after
# training steps read the enricher weight of the first evaluation. Every optimizer step therefore
# empties the cache.
register_optimizer_step_post_hook(_forget_scaled_weights)


def scaled_enricher_weight(layer, dtype: torch.dtype) -> torch.Tensor:
    """W_e · diag(g) in ``dtype``, cached per layer until either parameter changes: an optimizer
    step (any ``torch.optim`` optimizer) or an in-place edit that bumps the version counter.

    Parameters created under ``torch.inference_mode`` have no version counter, so an in-place change
    to them could not be seen: for those it is computed afresh at every call (one small product)."""
    w, g = layer.enricher.weight, layer.norm.weight
    cacheable = not (w.is_inference() or g.is_inference())
    key = (w.data_ptr(), w._version, g.data_ptr(), g._version, dtype) if cacheable else None
    hit = _SCALED_WEIGHTS.get(layer)
    if cacheable and hit is not None and hit[0] == key:
        return hit[1]
    with torch.no_grad():
        scaled = (w.float() * g.float()[None, :]).to(dtype).contiguous()
    if cacheable:
        _SCALED_WEIGHTS[layer] = (key, scaled)
    return scaled


def _try_build(key, run, message: str, warn: bool = True):
    """``run()``'s result, or None where this Triton cannot build the kernel (a compiler failure, or
    no Gluon): ``key`` is then marked broken, so later calls fall back at once, and ``message``
    (formatted with the reason) is warned once if ``warn``. Runtime failures propagate."""
    from triton.compiler.errors import CompilationError

    if key in _TMA_BROKEN:
        return None
    try:
        return run()
    except (ImportError, CompilationError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and "PassManager" not in str(err) and "ptxas" not in str(err):
            raise  # a real runtime failure, not a compiler one
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
    _TMA_BROKEN.add(key)
    if warn:
        warnings.warn("aveyb: " + message.format(reason), RuntimeWarning, stacklevel=4)
    return None


def _launch_tma(kernel, grid, fallback_name: str, *args, **kwargs) -> bool:
    """Run a TMA kernel; if this Triton cannot compile it, warn once and let the caller fall back."""
    return _try_build(kernel, lambda: kernel[grid](*args, **kwargs) or True,
                      "the TMA kernel could not be built here ({}); using " + fallback_name + " instead") is not None


_TMA_BROKEN: set = set()


ENRICHER_MODES = ("auto", "ws", "tma-tanh", "tma", "cublas")

# From this many rows (8 x 32,768) ``auto`` runs tma-tanh instead of ws. Enricher calls alone,
# ws / tma-tanh: 0.93 and 0.97 at 16,384 and 32,768 rows, 1.05-1.10 from 65,536 to 786,432
# on an H100. Whole forwards disagree below 262,144 rows: ws was
# 3.6% and 4.5% faster at 8 x 8,192 and 8 x 16,384; at
# 8 x 32,768 two of three runs favoured tma-tanh (by 0.5% and 5%), one ws (by 2.4%); at 8 x 98,304
# tma-tanh by 3.3%. The Gluon kernel has one tile configuration, chosen at 16,384 rows.
WS_MAX_ROWS = 1 << 18


def enricher_mode(rows: int | None = None) -> str:
    """How the 16-bit enricher runs on Hopper for ``rows`` rows (``AVEYB_ENRICHER``):

    * ``auto`` (default) -- ``ws`` below WS_MAX_ROWS rows, ``tma-tanh`` from there (both compute
      the same tanh-form GELU, bitwise equal outputs); ``rows=None`` answers for short inputs;
    * ``ws`` -- GELU in its tanh form on the hardware tanh (one MUFU instruction) in a
      warp-specialised Gluon kernel (:mod:`aveyb.kernels.gluon_gemm`: a loader warp and two
      ping-pong consumer warpgroups, so one tile's epilogue overlaps the next tile's MMAs). Its
      output is bitwise that of ``tma-tanh``. Where this Triton has no Gluon or cannot build the
      kernel, ``tma-tanh`` runs instead (with a warning only if ``ws`` was asked for explicitly);
      ReLU and SiLU always run ``tma-tanh``'s kernel;
    * ``tma-tanh`` -- the persistent Triton TMA kernel with the same tanh-form GELU. It differs
      from the exact GELU by at most 4.7e-4 (1.5e-4 relative over a N(0, 2²) input), a tenth of
      bf16's rounding of the result;
    * ``tma`` -- the same kernel with the exact GELU (erf to 1.5e-7 by :func:`erf_fast`);
    * ``cublas`` -- RMSNorm applied in one pass, then cuBLASLt with its bias + GELU (tanh form)
      or ReLU epilogue (SiLU runs ``tma``).

    fp32 and the pointer kernels always use the exact activation. Speeds: docs/kernels.md.
    """
    mode = env_choice("AVEYB_ENRICHER", ENRICHER_MODES, "auto")
    if mode == "auto":
        return "tma-tanh" if rows is not None and rows >= WS_MAX_ROWS else "ws"
    return mode


def _enrich_cublas(x, stats, weight, bias, mask, act_id, eps, z):
    rows, width = x.shape
    xhat = torch.empty_like(x)
    _rms_apply_kernel[(triton.cdiv(rows, 32),)](x, stats.parts, xhat, rows, width, stats.count, stats.parts.shape[1],
                                               eps, BLOCK_R=32, BLOCK_D=min(256, triton.next_power_of_2(width)),
                                               num_warps=4)
    torch._addmm_activation(bias, xhat, weight.t(), use_gelu=act_id != 2, out=z)
    if mask is not None:
        z[:, :width].mul_(mask.reshape(-1, 1).to(z.dtype))
    return z


def _gluon(name: str, env: str, run):
    """``run()``'s result (a Gluon kernel launch), or None where this Triton has no Gluon or cannot
    build the kernel (warned once if ``env`` asked for it explicitly), so the caller falls back."""
    return _try_build(name, run, f"the warp-specialised {name} is unavailable here ({{}}); using the Triton TMA "
                      "kernel instead", warn=os.environ.get(env) == "ws")


def _enrich_ws(x, stats, weight, bias, mask, mask_u8, eps, z) -> bool:
    def run():
        from aveyb.kernels.gluon_gemm import enrich_ws

        enrich_ws(x, stats.parts, stats.count, weight, bias, mask_u8, mask is not None, eps, z, _num_sms(x.device))
        return True
    return _gluon("enricher", "AVEYB_ENRICHER", run) is not None


FUSER_MODES = ("tma", "ws")


def fuser_mode() -> str:
    """How the 16-bit fuser runs on Hopper (``AVEYB_FUSER``): ``tma`` (default), the persistent
    Triton kernel, or ``ws``, the warp-specialised Gluon kernel of :mod:`aveyb.kernels.gluon_gemm`
    (falls back to ``tma`` where it cannot be built). Their outputs agree bitwise (row statistics
    to 2.4e-7); in the model at 2,048 tokens ``ws`` was not faster (docs/kernels.md), its epilogue
    (bias, residual, statistics) being too light to be worth hiding."""
    return env_choice("AVEYB_FUSER", FUSER_MODES, "tma")


def enrich(x: torch.Tensor, stats: RowStats, weight: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None,
           act_id: int, eps: float) -> torch.Tensor:
    """(R, d) raw layer input -> Z = [U | G | Zb] (R, E·d), U zero on padded rows. ``weight`` = W_e · diag(g)."""
    rows, width = x.shape
    n_out = weight.shape[0]
    z = torch.empty(rows, n_out, device=x.device, dtype=x.dtype)
    if rows == 0:
        return z
    mask_u8 = mask_arg(mask, x)
    tiles = lambda meta: triton.cdiv(rows, meta["BLOCK_M"]) * triton.cdiv(n_out, meta["BLOCK_N"])
    if use_tma(width, x, weight, z):
        mode = enricher_mode(rows)
        if mode == "cublas" and act_id in (0, 1, 2):
            return _enrich_cublas(x, stats, weight, bias, mask, act_id, eps, z)
        if mode == "ws" and act_id in (0, 1) and _enrich_ws(x, stats, weight, bias, mask, mask_u8, eps, z):
            return z
        sms = _num_sms(x.device)
        launched = _launch_tma(
            _enricher_tma_kernel, lambda meta: (min(sms * meta["OCC"], tiles(meta)),), "the pointer enricher",
            _desc(x), _desc(weight), _desc(z), bias, stats.parts, mask_u8,
            rows, n_out, width, stats.count, stats.parts.shape[1], _bucket(rows), eps,
            HAS_MASK=mask is not None, ACT=act_id, FAST=1 if mode == "tma" else 2, NUM_SMS=sms,
        )
        if launched:
            return z
    _enricher_kernel[lambda meta: (tiles(meta),)](
        x, weight, bias, stats.parts, mask_u8, z,
        rows, n_out, width, stats.count, stats.parts.shape[1], _bucket(rows), eps,
        HAS_MASK=mask is not None, ACT=act_id, PREC=dot_precision(x.dtype),
    )
    return z


def fuse(f: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor,
         alpha: torch.Tensor) -> tuple[torch.Tensor, RowStats]:
    """out = F · W_fᵀ + b_f + α · X (R, d) for F (R, K) with unit column stride (a view of Z is
    fine), and the row statistics of ``out`` for the next layer."""
    rows, k = f.shape
    width = weight.shape[0]
    out = torch.empty(rows, width, device=x.device, dtype=x.dtype)
    parts = RowStats.buffer(rows, width, x.device)
    if rows == 0:
        return out, RowStats(parts, 0)
    tiles = lambda meta: triton.cdiv(rows, meta["BLOCK_M"]) * triton.cdiv(width, meta["BLOCK_N"])
    launched = False
    if use_tma(width, f, weight, x, out):
        sms = _num_sms(x.device)
        if fuser_mode() == "ws":
            def run():
                from aveyb.kernels.gluon_gemm import fuse_ws

                return fuse_ws(f, weight, bias, x, alpha, out, parts, sms)
            count = _gluon("fuser", "AVEYB_FUSER", run)
            if count is not None:
                return out, RowStats(parts, count)
        launched = _launch_tma(
            _fuser_tma_kernel, lambda meta: (min(sms * meta["OCC"], tiles(meta)),), "the pointer fuser",
            _desc(f), _desc(weight), _desc(x), _desc(out), bias, alpha, parts,
            rows, width, k, parts.shape[1], _bucket(rows), NUM_SMS=sms,
        )
    kernel = _fuser_tma_kernel if launched else _fuser_kernel
    if not launched:
        kernel[lambda meta: (tiles(meta),)](
            f, weight, bias, x, alpha, out, parts,
            rows, width, k, f.stride(0), parts.shape[1], _bucket(rows), PREC=dot_precision(x.dtype),
        )
    # The partials written are one per column tile of the config that ran (autotuning picks it).
    return out, RowStats(parts, triton.cdiv(width, kernel.best_config.kwargs["BLOCK_N"]))
