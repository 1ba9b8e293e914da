"""The layer's training path: ``AveyBLayer.forward`` as one autograd function with hand-written
Triton kernels around cuBLAS GEMMs, forward and backward (SPEC.md section 3).

Forward (compute dtype c: autocast's, else x's)::

    xn, r = RMSNorm(x)                       _rms_forward_kernel        (r kept)
    Zpre  = xn · W_eᵀ + b_e                  cuBLAS                     (kept)
    Z     = act(Zpre), U's padded rows 0     _act_forward_kernel
    G    <- G ⊙ mix(U) in place, mix(U) kept the inference mix kernels with SAVE
    out   = Z[:, d:] · W_fᵀ + b_f + α · x    cuBLAS on the strided view, then _residual_kernel

Backward::

    dy, db_f                                 _cast_colsum_kernel        (dout in c, its column sums)
    dF   = dy · W_f,  dW_f = dyᵀ · F         cuBLAS (dW_f, dW_e straight to fp32 where torch can)
    dZpre_G, dZpre_Zb, d mix(U)              _gate_backward_kernel
    dZpre_U                                  _static_mix_backward_kernel, or
                                             _dynamic_scores_backward_kernel + _dynamic_mix_backward_kernel
    dxn = dZpre · W_e,  [dW_e | db_e] = dZpreᵀ · [xn | 1]   cuBLAS (xn is stored with a ones column)
    dx, dg, dα                               _rms_backward_kernel (residual included)

No S × S matrix of the forward is stored; the dynamic backward writes Nᵀ, dC and dCᵀ per split
(M·S² values each in the compute dtype, a third of U's size at S = 256, d = 768) and reads them
back once. Short inputs are bound by the host (about 25 launches per layer): ``layers.train_layer_mode``
picks the compiled reference layer there.
"""

from __future__ import annotations

import torch
import triton

from aveyb.kernels import backward as kb
from aveyb.kernels.layers import ACT_IDS, NORM_IDS, mix_and_gate, split_grid
from aveyb.kernels.tuning import dot_precision, mask_arg, product_fp32, size_bucket


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _rms_forward(x2, g, eps, dtype):
    """(xn_ext, r): xn_ext = [RMSNorm(x) | 1 | 0 …], rows padded to a multiple of 8 (16-byte aligned
    for cuBLAS) with at least the ones column, and r = rsqrt(mean(x²) + eps)."""
    rows, width = x2.shape
    ext = width + 8 - width % 8
    xn = torch.empty(rows, ext, device=x2.device, dtype=dtype)
    rstd = torch.empty(rows, device=x2.device, dtype=torch.float32)
    grid = lambda meta: (triton.cdiv(rows, meta["BLOCK_R"]),)  # noqa: E731
    kb._rms_forward_kernel[grid](x2, g, xn, rstd, rows, width, ext, eps, BLOCK_D=triton.next_power_of_2(ext))
    return xn, rstd


def _rms_backward(dxn, x2, rstd, g, dout, alpha):
    rows, width = x2.shape
    dx = torch.empty_like(x2)
    n_blocks = triton.cdiv(rows, kb.ROWS_PER_PROGRAM)
    dg = torch.empty(n_blocks, width, device=x2.device, dtype=torch.float32)
    dalpha = torch.empty(n_blocks, device=x2.device, dtype=torch.float32)
    kb._rms_backward_kernel[(n_blocks,)](dxn, x2, rstd, g, dout, alpha, dx, dg, dalpha, rows, width,
                                         RPP=kb.ROWS_PER_PROGRAM, BLOCK_D=triton.next_power_of_2(width))
    return dx, dg.sum(0), dalpha.sum()


def _cast_colsum(src, dtype):
    """(src in ``dtype``, its column sums in fp32)."""
    rows, cols = src.shape
    dst = torch.empty(rows, cols, device=src.device, dtype=dtype)
    parts = torch.empty(triton.cdiv(rows, kb.ROWS_PER_PROGRAM), cols, device=src.device, dtype=torch.float32)
    grid = lambda meta: (parts.shape[0], triton.cdiv(cols, meta["BLOCK_N"]))  # noqa: E731
    kb._cast_colsum_kernel[grid](src, dst, parts, rows, cols, RPP=kb.ROWS_PER_PROGRAM)
    return dst, parts.sum(0)


def _elementwise_grid(rows, cols):
    return lambda meta: (triton.cdiv(rows, meta["BLOCK_R"]), triton.cdiv(cols, meta["BLOCK_N"]))


class LayerFunction(torch.autograd.Function):
    """out = AveyBLayer.forward(x, mask) on (R, d) rows, as a function of the layer's tensors."""

    @staticmethod
    def forward(ctx, x, mask, g, we, be, wf, bf, alpha, proj, tau, meta):
        kind, act, norm, norm_eps, eps, split = meta
        dtype = compute_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            rows, width = x.shape
            we_c, be_c, wf_c, bf_c = (t.to(dtype) for t in (we, be, wf, bf))
            xn, rstd = _rms_forward(x, g, norm_eps, dtype)
            zpre = torch.addmm(be_c, xn[:, :width], we_c.t())
            zw = zpre.shape[1]
            z = torch.empty_like(zpre)
            kb._act_forward_kernel[_elementwise_grid(rows, zw)](
                zpre, z, mask_arg(mask, z), rows, zw, width, ACT=ACT_IDS[act], HAS_MASK=mask is not None)
            mixu = torch.empty(rows, width, device=x.device, dtype=dtype)
            mix_and_gate(z.view(-1, split, zw), None if mask is None else mask.view(-1, split), kind, width, norm,
                         eps, proj, tau, save=mixu)
            y = torch.addmm(bf_c, z[:, width:], wf_c.t())
            out = torch.empty(rows, width, device=x.device, dtype=torch.promote_types(dtype, x.dtype))
            kb._residual_kernel[(triton.cdiv(out.numel(), 2048),)](y, x, alpha, out, out.numel(), BLOCK=2048)
        ctx.save_for_backward(x, mask, g, we_c, wf_c, alpha, proj, tau, xn, rstd, zpre, z, mixu)
        ctx.meta, ctx.dtypes = meta, (we.dtype, be.dtype, wf.dtype, bf.dtype)
        return out

    @staticmethod
    def backward(ctx, dout):
        x, mask, g, we_c, wf_c, alpha, proj, tau, xn, rstd, zpre, z, mixu = ctx.saved_tensors
        kind, act, norm, norm_eps, eps, split = ctx.meta
        rows, width = x.shape
        zw, dtype = zpre.shape[1], zpre.dtype
        with torch.autocast(x.device.type, enabled=False):
            dout = dout.contiguous()
            dy, dbf = _cast_colsum(dout, dtype)
            f = z[:, width:]
            df = dy @ wf_c
            dwf = product_fp32(torch.mm, dy.t(), f)
            dzpre = torch.empty_like(zpre)
            dmix = torch.empty(rows, width, device=x.device, dtype=dtype)
            kb._gate_backward_kernel[_elementwise_grid(rows, zw - width)](
                df, zpre, mixu, dzpre, dmix, rows, zw - width, width, zw, ACT=ACT_IDS[act])
            dproj, dtau = _mix_backward(z, dmix, zpre, mask, dzpre, proj, tau, kind, act, norm, eps, split)
            dwe_ext = product_fp32(torch.mm, dzpre.t(), xn)  # [dW_e | db_e | 0 …]: xn's ones column gives the bias
            dwe, dbe = dwe_ext[:, :width], dwe_ext[:, width]
            dxn = dzpre @ we_c
            dx, dg, dalpha = _rms_backward(dxn, x, rstd, g, dout, alpha)
        dwe_t, dbe_t, dwf_t, dbf_t = (t.to(d) for t, d in zip((dwe, dbe, dwf, dbf), ctx.dtypes))
        return (dx, None, dg.to(g.dtype), dwe_t, dbe_t, dwf_t, dbf_t, dalpha.to(alpha.dtype).reshape(alpha.shape),
                None if dproj is None else dproj.to(proj.dtype), None if dtau is None else dtau.to(tau.dtype),
                None)


def _mix_backward(z, dmix, zpre, mask, dzpre, proj, tau, kind, act, norm, eps, split):
    """Writes dZpre_U; returns (dP or None, dτ or None)."""
    rows, zw = z.shape
    width = dmix.shape[1]
    n_split = rows // split
    mask_u8 = mask_arg(mask, z)
    prec = dot_precision(z.dtype)
    nb = size_bucket(n_split)  # the autotuning key's size class
    if kind == "static":
        kb._static_mix_backward_kernel[split_grid(n_split, split, width)](
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
    kb._dynamic_scores_backward_kernel[split_grid(n_split, split)](
        z, dmix, p, tau_t, mask_u8, n_t, dc, dc_t, inv, rho, dproj, dtau, split, width, zw, eps, nb,
        HAS_MASK=mask is not None, NORM=NORM_IDS[norm], COUPLED=coupled, PREC=prec,
        BLOCK_S=max(16, triton.next_power_of_2(split)))
    kb._dynamic_mix_backward_kernel[split_grid(n_split, split, width)](
        z, dmix, n_t, dc, dc_t, inv, rho, zpre, mask_u8, dzpre, split, width, zw, eps, nb, ACT=ACT_IDS[act],
        HAS_MASK=mask is not None, PREC=prec)
    return (dproj if coupled else None), (dtau.reshape(tau.shape) if norm == "softmax" else None)


def layer_train_forward(layer, x: torch.Tensor, mask: torch.Tensor | None, act: str) -> torch.Tensor:
    """``AveyBLayer.forward(x, mask)`` (M, S, d) with autograd, through :class:`LayerFunction`."""
    n_split, split, width = x.shape
    kind = layer.kind
    proj = getattr(layer, "spatial_proj", None) if kind in ("static", "coupled") else None
    tau = getattr(layer, "tau", None) if layer.dynamic_norm == "softmax" and kind != "static" else None
    meta = (kind, act, layer.dynamic_norm, layer.norm.eps, layer.eps, split)
    flat_mask = None if mask is None else mask.reshape(-1).contiguous()
    out = LayerFunction.apply(x.reshape(-1, width), flat_mask, layer.norm.weight, layer.enricher.weight,
                              layer.enricher.bias, layer.fuser.weight, layer.fuser.bias, layer.alpha, proj, tau, meta)
    return out.view(n_split, split, width)
