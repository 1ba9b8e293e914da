"""RMSNorm (SPEC.md section 3.1) where it is not folded into the enricher GEMM.

Inference folds RMSNorm into the enricher (``enricher.enrich``): its gain into the cached weight,
its row scale r = rsqrt(mean(x²) + ε) from *row statistics*, partial sums of squares of the layer
input. The previous layer's fuser writes them in its epilogue (``fuser.fuse``); for the first layer
:func:`row_stats` computes them. The training path (``layer.LayerFunction``) runs RMSNorm as kernels
of its own: :func:`rms_norm_forward` keeps r, :func:`rms_norm_backward` also adds the residual's
share of dx and reduces dg and dα. Matches :func:`aveyb.model.layers.rms_norm`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from aveyb.kernels._triton_utils import _MIN_BLOCK_N, ROWS_PER_PROGRAM
from aveyb.kernels.tuning import tunable


# ---- row statistics (inference) ----
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


# ---- training: RMSNorm as kernels of its own ----
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


def rms_norm_forward(x2, g, eps, dtype):
    """(xn_ext, r): xn_ext = [RMSNorm(x) | 1 | 0 …], rows padded to a multiple of 8 (16-byte aligned
    for cuBLAS) with at least the ones column, and r = rsqrt(mean(x²) + eps)."""
    rows, width = x2.shape
    ext = width + 8 - width % 8
    xn = torch.empty(rows, ext, device=x2.device, dtype=dtype)
    rstd = torch.empty(rows, device=x2.device, dtype=torch.float32)
    grid = lambda meta: (triton.cdiv(rows, meta["BLOCK_R"]),)  # noqa: E731
    _rms_forward_kernel[grid](x2, g, xn, rstd, rows, width, ext, eps, BLOCK_D=triton.next_power_of_2(ext))
    return xn, rstd


def rms_norm_backward(dxn, x2, rstd, g, dout, alpha):
    """(dx, dg, dα) from dxn = ∂L/∂RMSNorm(x) and dout = ∂L/∂out, the residual α · x included."""
    rows, width = x2.shape
    dx = torch.empty_like(x2)
    n_blocks = triton.cdiv(rows, ROWS_PER_PROGRAM)
    dg = torch.empty(n_blocks, width, device=x2.device, dtype=torch.float32)
    dalpha = torch.empty(n_blocks, device=x2.device, dtype=torch.float32)
    _rms_backward_kernel[(n_blocks,)](dxn, x2, rstd, g, dout, alpha, dx, dg, dalpha, rows, width,
                                      RPP=ROWS_PER_PROGRAM, BLOCK_D=triton.next_power_of_2(width))
    return dx, dg.sum(0), dalpha.sum()
