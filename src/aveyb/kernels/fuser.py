"""The fuser and the residual (SPEC.md section 3.3): out = W_f · [G ⊙ mix(U) ; Zb] + b_f + α · X.

Matches the last line of ``aveyb.model.layers.layer_forward``. The GEMM reads its input as the view Z[:, d:] of
the enricher's output, which the mix kernel has gated in place. The epilogue adds bias and
residual and writes, per row and column tile, the partial sum of squares of the (rounded) output:
the next layer's enricher sums those partials to get its RMSNorm scale (``rms_norm.RowStats``), so
no pass re-reads X for it.

Kernels (:func:`fuse` picks one; speeds in docs/kernels.md): ``_fuser_kernel`` with pointer loads
(any GPU and dtype) and the persistent ``_fuser_tma_kernel`` (Hopper or newer, 16-bit data, d a
multiple of 128). A warp-specialised Gluon fuser was no faster than the TMA kernel, its epilogue
(bias, residual, statistics) too light to be worth hiding. The training path (``layer.LayerFunction``) runs the GEMM in cuBLAS, then
:func:`residual`; its backward starts with :func:`cast_colsum`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from aveyb.kernels._triton_utils import (
    _GEMM_CONFIGS,
    _TMA_CONFIGS,
    ROWS_PER_PROGRAM,
    _grouped_tile,
    _halves,
    _mainloop,
    _tile_ids,
    _tma_mainloop,
    dot_precision,
    launch_tma,
    num_sms,
    row_bucket,
    tensor_descriptor,
    use_tma,
)
from aveyb.kernels.rms_norm import RowStats
from aveyb.kernels.tuning import tunable


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


# ---- which kernel runs ----
def fuse(f: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor,
         alpha: torch.Tensor, gemm_tma: bool = True) -> tuple[torch.Tensor, RowStats]:
    """out = F · W_fᵀ + b_f + α · X (R, d) for F (R, K) with unit column stride (a view of Z is
    fine), and the row statistics of ``out`` for the next layer. ``gemm_tma``:
    ``KernelOptions.gemm_tma``."""
    rows, k = f.shape
    width = weight.shape[0]
    out = torch.empty(rows, width, device=x.device, dtype=x.dtype)
    parts = RowStats.buffer(rows, width, x.device)
    if rows == 0:
        return out, RowStats(parts, 0)
    tiles = lambda meta: triton.cdiv(rows, meta["BLOCK_M"]) * triton.cdiv(width, meta["BLOCK_N"])
    launched = False
    if use_tma(width, f, weight, x, out, enabled=gemm_tma):
        sms = num_sms(x.device)
        launched = launch_tma(
            _fuser_tma_kernel, lambda meta: (min(sms * meta["OCC"], tiles(meta)),), "the pointer fuser",
            tensor_descriptor(f), tensor_descriptor(weight), tensor_descriptor(x), tensor_descriptor(out),
            bias, alpha, parts,
            rows, width, k, parts.shape[1], row_bucket(rows), NUM_SMS=sms,
        )
    kernel = _fuser_tma_kernel if launched else _fuser_kernel
    if not launched:
        kernel[lambda meta: (tiles(meta),)](
            f, weight, bias, x, alpha, out, parts,
            rows, width, k, f.stride(0), parts.shape[1], row_bucket(rows), PREC=dot_precision(x.dtype),
        )
    # The partials written are one per column tile of the config that ran (autotuning picks it).
    return out, RowStats(parts, triton.cdiv(width, kernel.best_config.kwargs["BLOCK_N"]))


# ---- training: the residual, and the output gradient's cast and column sums ----
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


def residual(y: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """out = y + α · x (R, d) in ``dtype`` promoted with x's: the residual stream keeps x's dtype."""
    out = torch.empty(x.shape, device=x.device, dtype=torch.promote_types(dtype, x.dtype))
    _residual_kernel[(triton.cdiv(out.numel(), 2048),)](y, x, alpha, out, out.numel(), BLOCK=2048)
    return out


def cast_colsum(src: torch.Tensor, dtype: torch.dtype):
    """(src in ``dtype``, its column sums in fp32): the output gradient in the compute dtype and the
    fuser bias's gradient."""
    rows, cols = src.shape
    dst = torch.empty(rows, cols, device=src.device, dtype=dtype)
    parts = torch.empty(triton.cdiv(rows, ROWS_PER_PROGRAM), cols, device=src.device, dtype=torch.float32)
    grid = lambda meta: (parts.shape[0], triton.cdiv(cols, meta["BLOCK_N"]))  # noqa: E731
    _cast_colsum_kernel[grid](src, dst, parts, rows, cols, RPP=ROWS_PER_PROGRAM)
    return dst, parts.sum(0)
