"""The enricher (SPEC.md section 3.1): Z = act(W_e · RMSNorm(X) + b_e) = [U | G | Zb].

Matches :func:`aveyb.model.layers.enrich` with U zeroed on padded rows, as
:func:`~aveyb.model.layers.contextualize` masks it.
RMSNorm's gain g is folded into the weight (W_e · diag(g), cached per weight tensor:
:func:`scaled_enricher_weight`) and its row scale r = rsqrt(mean(x²) + ε) is applied to the
accumulator from the row statistics of X (``rms_norm.RowStats``), so the GEMM reads the raw layer
input and the normalised X is never written. The epilogue adds the bias, applies the activation
once, zeroes U on padded rows and writes Z (R, E·d); the mix kernel then overwrites G with
G ⊙ mix(U) in place, so that Z[:, d:] is the fuser's input without any concatenation.

Kernels (:func:`enrich` picks one; speeds in docs/kernels.md):

* ``_enricher_kernel`` -- pointer loads, any GPU and dtype (fp32 with 3xTF32 dots, small d);
* ``_enricher_tma_kernel`` -- persistent, TMA loads and stores: Hopper or newer, 16-bit data,
  d a multiple of 128;
* the warp-specialised Gluon kernel of :mod:`aveyb.kernels.enricher_gluon` (Hopper, 16-bit, the
  tanh-form GELU of ``KernelOptions.gelu="tanh"``), chosen below WS_MAX_ROWS rows
  (``enricher_mode``).

The training path (``layer.LayerFunction``) runs the GEMM in cuBLAS on the normalised input and
then :func:`activate`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.weak import WeakIdKeyDictionary

from aveyb.kernels._triton_utils import (
    _GEMM_CONFIGS,
    _TMA_CONFIGS,
    ACT_IDS,
    ELEMENTWISE_CONFIGS,
    _grouped_tile,
    _halves,
    _keep_rows,
    _mainloop,
    _tile_ids,
    _tma_mainloop,
    act_fast,
    act_fn,
    dot_precision,
    elementwise_grid,
    launch_tma,
    mask_arg,
    num_sms,
    row_bucket,
    tensor_descriptor,
    try_build,
    use_tma,
)
from aveyb.kernels.options import DEFAULT_OPTIONS, KernelOptions
from aveyb.kernels.rms_norm import RowStats
from aveyb.kernels.tuning import tunable


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
    past the end are never stored). FAST: the TMA kernel's activation, :func:`act_fast`."""
    if FAST:
        y = act_fast(acc * scale[:, None] + bias[None, :], ACT)
    else:
        y = act_fn(acc * scale[:, None] + bias[None, :], ACT)
    if HAS_MASK:
        y = tl.where(keep[:, None] | (cols >= K)[None, :], y, 0.0)
    return y


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


@triton.jit
def _enrich_half(acc, scale, keep, b_ptr, z_desc, off_m, off_n, N, K, ACT: tl.constexpr, HAS_MASK: tl.constexpr,
                 HALF: tl.constexpr, FAST: tl.constexpr):
    cols = off_n + tl.arange(0, HALF)
    bias = tl.load(b_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)
    z = _enrich_epilogue(acc, scale, bias, keep, cols, K, ACT, FAST, HAS_MASK)
    z_desc.store([off_m, off_n], z.to(z_desc.dtype))


@triton.autotune(configs=tunable(_TMA_CONFIGS), key=["R_BUCKET", "N", "K"])
@triton.jit
def _enricher_tma_kernel(
    a_desc, w_desc, z_desc, b_ptr, ss_ptr, mask_ptr,
    R, N, K, NT, SS_STRIDE, R_BUCKET, eps,
    HAS_MASK: tl.constexpr, ACT: tl.constexpr, NUM_SMS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, OCC: tl.constexpr,
    WS: tl.constexpr = False, FLAT: tl.constexpr = True, EPI: tl.constexpr = 2, FAST: tl.constexpr = False,
):
    """:func:`_enricher_kernel` as a persistent TMA kernel; FAST (``KernelOptions.gelu="tanh"``): the
    GELUs in their tanh form on the hardware tanh (:func:`act_fast`). The epilogue works on EPI (2 or
    4) column slices of the tile."""
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
            _enrich_half(acc00, scale, keep, b_ptr, z_desc, off_m, off_n, N, K, ACT, HAS_MASK, Q, FAST)
            _enrich_half(acc01, scale, keep, b_ptr, z_desc, off_m, off_n + Q, N, K, ACT, HAS_MASK, Q, FAST)
            _enrich_half(acc10, scale, keep, b_ptr, z_desc, off_m, off_n + 2 * Q, N, K, ACT, HAS_MASK, Q, FAST)
            _enrich_half(acc11, scale, keep, b_ptr, z_desc, off_m, off_n + 3 * Q, N, K, ACT, HAS_MASK, Q, FAST)
        else:
            _enrich_half(acc0, scale, keep, b_ptr, z_desc, off_m, off_n, N, K, ACT, HAS_MASK, HALF, FAST)
            _enrich_half(acc1, scale, keep, b_ptr, z_desc, off_m, off_n + HALF, N, K, ACT, HAS_MASK, HALF, FAST)


# ---- the RMSNorm-scaled weight ----
_SCALED_WEIGHTS = WeakIdKeyDictionary()  # by identity: a tensor's == is elementwise


def _forget_scaled_weights(optimizer, args, kwargs) -> None:
    _SCALED_WEIGHTS.clear()


# The version counter alone misses optimizer updates: the fused AdamW step (torch's default for
# CUDA parameters in our loops) writes the parameters without bumping it, so an evaluation after
# training steps read the enricher weight of the first evaluation. Every optimizer step therefore
# empties the cache.
register_optimizer_step_post_hook(_forget_scaled_weights)


def scaled_enricher_weight(w: torch.Tensor, g: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """W_e · diag(g) in ``dtype`` for the enricher weight ``w`` and RMSNorm gain ``g``, cached per
    weight tensor until either changes: an optimizer step (any ``torch.optim`` optimizer) or an
    in-place edit that bumps the version counter.

    Parameters created under ``torch.inference_mode`` have no version counter, so an in-place change
    to them could not be seen: for those it is computed afresh at every call (one small product)."""
    cacheable = not (w.is_inference() or g.is_inference())
    key = (w.data_ptr(), w._version, g.data_ptr(), g._version, dtype) if cacheable else None
    hit = _SCALED_WEIGHTS.get(w) if cacheable else None
    if cacheable and hit is not None and hit[0] == key:
        return hit[1]
    with torch.no_grad():
        scaled = (w.float() * g.float()[None, :]).to(dtype).contiguous()
    if cacheable:
        _SCALED_WEIGHTS[w] = (key, scaled)
    return scaled


# ---- which kernel runs ----
# From this many rows (8 x 32,768) ``auto`` with the tanh-form GELU runs tma instead of ws. Enricher calls alone,
# ws / tma-tanh: 0.93 and 0.97 at 16,384 and 32,768 rows, 1.05-1.10 from 65,536 to 786,432
# on an H100. Whole forwards disagree below 262,144 rows: ws was
# 3.6% and 4.5% faster at 8 x 8,192 and 8 x 16,384; at
# 8 x 32,768 two of three runs favoured tma-tanh (by 0.5% and 5%), one ws (by 2.4%); at 8 x 98,304
# tma-tanh by 3.3%. The Gluon kernel has one tile configuration, chosen at 16,384 rows.
WS_MAX_ROWS = 1 << 18


def enricher_mode(rows: int | None = None, options: KernelOptions = DEFAULT_OPTIONS) -> str:
    """Which kernel runs the 16-bit enricher on Hopper for ``rows`` rows (``KernelOptions.enricher``
    and ``gelu``): ``"tma"`` or ``"ws"``.

    * ``tma`` -- the persistent Triton TMA kernel; the exact activation by default, or with
      ``gelu="tanh"`` the GELUs in their tanh form on the hardware tanh (one MUFU instruction),
      which differs from the exact GELU by at most 4.7e-4 (1.5e-4 relative over a N(0, 2²) input),
      a tenth of bf16's rounding of the result;
    * ``ws`` (``gelu="tanh"`` only) -- the same tanh-form GELU in a warp-specialised Gluon kernel
      (:mod:`aveyb.kernels.enricher_gluon`: a loader warp and two ping-pong consumer warpgroups, so
      one tile's epilogue overlaps the next tile's MMAs); its output is bitwise that of ``tma``
      with the tanh form. Where this Triton has no Gluon or cannot build the kernel, ``tma`` runs
      instead (with a warning only if ``ws`` was asked for explicitly); ReLU and SiLU always run
      ``tma``;
    * ``auto`` -- with ``gelu="tanh"``, ``ws`` below WS_MAX_ROWS rows and ``tma`` from there
      (bitwise equal outputs: the row count never changes numerics); ``rows=None`` answers for
      short inputs; with the exact GELU, ``tma``.

    fp32 and the pointer kernels (``gemm_tma=False``) always use the exact activation.
    """
    if options.gelu != "tanh":
        return "tma"
    if options.enricher == "auto":
        return "tma" if rows is not None and rows >= WS_MAX_ROWS else "ws"
    return options.enricher


def _gluon(run, warn: bool = False):
    """``run()``'s result (the Gluon kernel's launch), or None where this Triton has no Gluon or cannot
    build the kernel (warned once if ``warn``: ``enricher="ws"`` asked for it explicitly), so the caller
    falls back."""
    return try_build("enricher", run, "the warp-specialised enricher is unavailable here ({}); using the Triton "
                     "TMA kernel instead", warn=warn)


def _enrich_ws(x, stats, weight, bias, mask, mask_u8, eps, z, warn: bool) -> bool:
    def run():
        from aveyb.kernels.enricher_gluon import enrich_ws

        enrich_ws(x, stats.parts, stats.count, weight, bias, mask_u8, mask is not None, eps, z, num_sms(x.device))
        return True
    return _gluon(run, warn) is not None


def enrich(x: torch.Tensor, stats: RowStats, weight: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None,
           act_id: int, eps: float, options: KernelOptions = DEFAULT_OPTIONS) -> torch.Tensor:
    """(R, d) raw layer input -> Z = [U | G | Zb] (R, E·d), U zero on padded rows. ``weight`` = W_e · diag(g);
    ``options``: ``gelu``, ``enricher`` and ``gemm_tma`` (:func:`enricher_mode`)."""
    rows, width = x.shape
    n_out = weight.shape[0]
    z = torch.empty(rows, n_out, device=x.device, dtype=x.dtype)
    if rows == 0:
        return z
    mask_u8 = mask_arg(mask, x)
    tiles = lambda meta: triton.cdiv(rows, meta["BLOCK_M"]) * triton.cdiv(n_out, meta["BLOCK_N"])
    if use_tma(width, x, weight, z, enabled=options.gemm_tma):
        gluon = enricher_mode(rows, options) == "ws" and act_id in (0, 1)  # the Gluon kernel computes the GELUs only
        if gluon and _enrich_ws(x, stats, weight, bias, mask, mask_u8, eps, z, warn=options.enricher == "ws"):
            return z
        sms = num_sms(x.device)
        launched = launch_tma(
            _enricher_tma_kernel, lambda meta: (min(sms * meta["OCC"], tiles(meta)),), "the pointer enricher",
            tensor_descriptor(x), tensor_descriptor(weight), tensor_descriptor(z), bias, stats.parts, mask_u8,
            rows, n_out, width, stats.count, stats.parts.shape[1], row_bucket(rows), eps,
            HAS_MASK=mask is not None, ACT=act_id, NUM_SMS=sms, FAST=options.gelu == "tanh",
        )
        if launched:
            return z
    _enricher_kernel[lambda meta: (tiles(meta),)](
        x, weight, bias, stats.parts, mask_u8, z,
        rows, n_out, width, stats.count, stats.parts.shape[1], row_bucket(rows), eps,
        HAS_MASK=mask is not None, ACT=act_id, PREC=dot_precision(x.dtype),
    )
    return z


# ---- training: the activation after cuBLAS's GEMM ----
@triton.autotune(configs=tunable(ELEMENTWISE_CONFIGS), key=["N", "D"])
@triton.jit
def _act_forward_kernel(zpre_ptr, z_ptr, mask_ptr, R, N, D, ACT: tl.constexpr, HAS_MASK: tl.constexpr,
                        BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    """Z = act(Zpre), U (the first D columns) zeroed on padded rows (``aveyb.model.layers.enrich`` + the mask)."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    ok = (rows < R)[:, None] & (cols < N)[None, :]
    offs = rows.to(tl.int64)[:, None] * N + cols[None, :]
    z = act_fn(tl.load(zpre_ptr + offs, mask=ok, other=0.0).to(tl.float32), ACT)
    if HAS_MASK:
        keep = _keep_rows(mask_ptr, rows, rows < R, HAS_MASK)
        z = tl.where(keep[:, None] | (cols >= D)[None, :], z, 0.0)
    tl.store(z_ptr + offs, z.to(z_ptr.dtype.element_ty), mask=ok)


def activate(zpre: torch.Tensor, mask: torch.Tensor | None, width: int, act: str) -> torch.Tensor:
    """Z = act(Zpre) (R, E·d), U's padded rows zeroed: the training path's enricher epilogue."""
    rows, zw = zpre.shape
    z = torch.empty_like(zpre)
    _act_forward_kernel[elementwise_grid(rows, zw)](
        zpre, z, mask_arg(mask, z), rows, zw, width, ACT=ACT_IDS[act], HAS_MASK=mask is not None)
    return z
