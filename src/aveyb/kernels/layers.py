"""Triton contextualization layer (SPEC.md section 3). Matches ``aveyb.model.layers.AveyBLayer.forward``.

A layer is five launches: RMSNorm (Triton) -> enricher GEMM (cuBLAS) -> one Triton "mix" kernel
-> fuser GEMM (cuBLAS) -> residual ``y + alpha * x`` (one fused elementwise op). The mix kernel
reads the enricher's *pre-activation* output Z once per tile and does, in one pass:
activation (exact GELU by default), the split Z = U | G | Zb, zeroing of padded rows of U, the mix,
the gate G * mix(U), and writes the fuser's input [G * mix(U) ; act(Zb)] directly, so that
neither act(Z), U, G, mix(U) nor the concatenation are ever separate tensors.

* ``_static_mix_kernel`` -- :func:`aveyb.model.layers.static_mix` plus gate: C = G * (P U), a
  (BLOCK_T x BLOCK_D) tile of output per program, P and U streamed in BLOCK_K chunks.
* ``_dynamic_mix_kernel`` -- :func:`aveyb.model.layers.dynamic_mix` plus gate: one program per
  (split, row block). Pass 1 accumulates U_rows U^T and all row norms over d-chunks (so U is
  normalised without ever being written), forms A, applies P (coupled) and the normalisation
  (``sum`` = divide-by-sum, ``softmax`` with tau, ``none``, ``signed_sum``) in registers; pass 2
  streams U again for norm(A) U and multiplies by the gate. The (S x S) A is never in memory.
* ``_rmsnorm_kernel`` -- :func:`aveyb.model.layers.rms_norm`.

Backward (training): each :class:`torch.autograd.Function` recomputes its reference (PyTorch)
forward from the saved inputs and differentiates it -- the "Triton forward + recomputation"
scheme. Only the layer input and Z (the enricher output) are kept per layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from aveyb.model import layers as ref

ACT_IDS = {"gelu": 0, "gelu_tanh": 1, "relu": 2, "silu": 3}
NORM_IDS = {"sum": 0, "softmax": 1, "none": 2, "signed_sum": 3}


def _dot_precision(dtype: torch.dtype) -> str:
    return "tf32x3" if dtype == torch.float32 else "tf32"


@triton.jit
def _act(x, ACT: tl.constexpr):
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


# ---- RMSNorm -----------------------------------------------------------------------------------
@triton.jit
def _rmsnorm_kernel(x_ptr, w_ptr, out_ptr, D, eps, BLOCK: tl.constexpr):
    """out = (x / sqrt(mean(x^2) + eps)).to(x.dtype) * w   (aveyb.model.layers.rms_norm)."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    ok = cols < D
    x = tl.load(x_ptr + row * D + cols, mask=ok, other=0.0).to(tl.float32)
    inv = tl.math.rsqrt(tl.sum(x * x, axis=0) / D + eps)
    normed = (x * inv).to(x_ptr.dtype.element_ty).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * D + cols, (normed * w).to(out_ptr.dtype.element_ty), mask=ok)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    width = x.shape[-1]
    x2 = x.contiguous().view(-1, width)
    out = torch.empty(x2.shape, dtype=torch.promote_types(x.dtype, weight.dtype), device=x.device)
    if x2.shape[0]:
        _rmsnorm_kernel[(x2.shape[0],)](x2, weight.contiguous(), out, width, eps,
                                        BLOCK=triton.next_power_of_2(width), num_warps=4)
    return out.view(x.shape)


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        ctx.save_for_backward(x, weight)
        ctx.eps = eps
        return rms_norm(x, weight, eps)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        with torch.enable_grad():
            xx, ww = x.detach().requires_grad_(True), weight.detach().requires_grad_(True)
            gx, gw = torch.autograd.grad(ref.rms_norm(xx, ww, ctx.eps), (xx, ww), grad)
        return gx, gw, None


# ---- the mix kernels ---------------------------------------------------------------------------
@triton.jit
def _bypass_block(z_ptr, out_ptr, m, t0, blk, S, D, ZW, OW,
                  ACT: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_B: tl.constexpr):
    """out[m, rows, D + c] = act(z[m, rows, 2D + c]) for one (BLOCK_T x BLOCK_B) block of Zb."""
    rows = t0 + tl.arange(0, BLOCK_T)
    cols = blk * BLOCK_B + tl.arange(0, BLOCK_B)
    ok = (rows < S)[:, None] & (cols < ZW - 2 * D)[None, :]
    rbase = (m.to(tl.int64) * S + rows)
    z = tl.load(z_ptr + rbase[:, None] * ZW + 2 * D + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + rbase[:, None] * OW + D + cols[None, :], _act(z, ACT).to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _load_u(z_ptr, mask_ptr, m, rows, dd, S, D, ZW, HAS_MASK: tl.constexpr, ACT: tl.constexpr):
    """act(Z[m, rows, dd]) rounded to Z's dtype, zero at padded rows and outside the tile."""
    row_ok = rows < S
    ok = row_ok[:, None] & (dd < D)[None, :]
    rbase = m.to(tl.int64) * S + rows
    u = _act(tl.load(z_ptr + rbase[:, None] * ZW + dd[None, :], mask=ok, other=0.0).to(tl.float32), ACT)
    if HAS_MASK:
        real = tl.load(mask_ptr + rbase, mask=row_ok, other=0) != 0
        ok = ok & real[:, None]
    return tl.where(ok, u, 0.0).to(z_ptr.dtype.element_ty)


@triton.jit
def _static_mix_kernel(
    z_ptr, p_ptr, mask_ptr, out_ptr, S, D, ZW, OW,
    HAS_MASK: tl.constexpr, ACT: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_B: tl.constexpr,
    PREC: tl.constexpr,
):
    """out[:, :D] = act(G) * (P @ act(U)·mask); out[:, D:] = act(Zb)  (static_mix + gate + concat)."""
    m = tl.program_id(0)
    t0 = tl.program_id(1) * BLOCK_T
    blk = tl.program_id(2)
    n_c = tl.cdiv(D, BLOCK_D)
    if blk < n_c:
        rows = t0 + tl.arange(0, BLOCK_T)
        dd = blk * BLOCK_D + tl.arange(0, BLOCK_D)
        kk = tl.arange(0, BLOCK_K)
        acc = tl.zeros((BLOCK_T, BLOCK_D), dtype=tl.float32)
        for k0 in range(0, S, BLOCK_K):
            p = tl.load(p_ptr + rows[:, None] * S + (k0 + kk)[None, :],
                        mask=(rows < S)[:, None] & ((k0 + kk) < S)[None, :], other=0.0)
            u = _load_u(z_ptr, mask_ptr, m, k0 + kk, dd, S, D, ZW, HAS_MASK, ACT)
            acc = tl.dot(p, u, acc, input_precision=PREC)
        ok = (rows < S)[:, None] & (dd < D)[None, :]
        rbase = m.to(tl.int64) * S + rows
        g = _act(tl.load(z_ptr + rbase[:, None] * ZW + D + dd[None, :], mask=ok, other=0.0).to(tl.float32), ACT)
        g = g.to(z_ptr.dtype.element_ty).to(tl.float32)
        tl.store(out_ptr + rbase[:, None] * OW + dd[None, :], (g * acc).to(out_ptr.dtype.element_ty), mask=ok)
    else:
        _bypass_block(z_ptr, out_ptr, m, t0, blk - n_c, S, D, ZW, OW, ACT, BLOCK_T, BLOCK_B)


@triton.jit
def _dynamic_mix_kernel(
    z_ptr, p_ptr, tau_ptr, mask_ptr, out_ptr, S, D, ZW, OW, eps,
    HAS_MASK: tl.constexpr, ACT: tl.constexpr, NORM: tl.constexpr, COUPLED: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_B: tl.constexpr,
    PREC: tl.constexpr,
):
    """out[:, :D] = act(G) * (norm(Û Ûᵀ [⊙ P]) @ U); out[:, D:] = act(Zb)  (dynamic_mix + gate + concat)."""
    m = tl.program_id(0)
    t0 = tl.program_id(1) * BLOCK_T
    blk = tl.program_id(2)
    if blk == 0:
        rows = t0 + tl.arange(0, BLOCK_T)
        keys = tl.arange(0, BLOCK_S)
        dd0 = tl.arange(0, BLOCK_D)
        acc = tl.zeros((BLOCK_T, BLOCK_S), dtype=tl.float32)
        n_rows = tl.zeros((BLOCK_T,), dtype=tl.float32)
        n_keys = tl.zeros((BLOCK_S,), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            ur = _load_u(z_ptr, mask_ptr, m, rows, d0 + dd0, S, D, ZW, HAS_MASK, ACT)
            uk = _load_u(z_ptr, mask_ptr, m, keys, d0 + dd0, S, D, ZW, HAS_MASK, ACT)
            acc = tl.dot(ur, tl.trans(uk), acc, input_precision=PREC)
            urf = ur.to(tl.float32)
            ukf = uk.to(tl.float32)
            n_rows += tl.sum(urf * urf, axis=1)
            n_keys += tl.sum(ukf * ukf, axis=1)
        inv_r = 1.0 / tl.maximum(tl.sqrt(n_rows), eps)
        inv_k = 1.0 / tl.maximum(tl.sqrt(n_keys), eps)
        a = acc * inv_r[:, None] * inv_k[None, :]
        key_in = keys < S
        if COUPLED:
            p = tl.load(p_ptr + rows[:, None] * S + keys[None, :],
                        mask=(rows < S)[:, None] & key_in[None, :], other=0.0).to(tl.float32)
            a = a * p
        if NORM == 0:
            a = a / tl.maximum(tl.sum(tl.abs(a), axis=1), eps)[:, None]
        elif NORM == 1:
            key_real = key_in
            if HAS_MASK:
                key_real = key_in & (tl.load(mask_ptr + m.to(tl.int64) * S + keys, mask=key_in, other=0) != 0)
            logits = a / tl.load(tau_ptr).to(tl.float32)
            logits = tl.where(key_real[None, :], logits, -3.0e38)
            logits = tl.where(key_in[None, :], logits, float("-inf"))
            e = tl.exp(logits - tl.max(logits, axis=1)[:, None])
            a = e / tl.sum(e, axis=1)[:, None]
        elif NORM == 3:
            a = a / (tl.sum(a, axis=1) + eps)[:, None]
        a = a.to(z_ptr.dtype.element_ty)
        for d0 in range(0, D, BLOCK_D):
            dd = d0 + dd0
            uk = _load_u(z_ptr, mask_ptr, m, keys, dd, S, D, ZW, HAS_MASK, ACT)
            mixed = tl.dot(a, uk, input_precision=PREC)
            ok = (rows < S)[:, None] & (dd < D)[None, :]
            rbase = m.to(tl.int64) * S + rows
            g = _act(tl.load(z_ptr + rbase[:, None] * ZW + D + dd[None, :], mask=ok, other=0.0).to(tl.float32), ACT)
            g = g.to(z_ptr.dtype.element_ty).to(tl.float32)
            tl.store(out_ptr + rbase[:, None] * OW + dd[None, :], (g * mixed).to(out_ptr.dtype.element_ty), mask=ok)
    else:
        _bypass_block(z_ptr, out_ptr, m, t0, blk - 1, S, D, ZW, OW, ACT, BLOCK_T, BLOCK_B)


def mix_and_gate(z: torch.Tensor, mask: torch.Tensor | None, kind: str, width: int, act: str,
                 norm: str = "sum", eps: float = 1e-12, spatial_proj: torch.Tensor | None = None,
                 tau: torch.Tensor | None = None) -> torch.Tensor:
    """Triton [G ⊙ mix(U) ; act(Zb)] from the enricher's pre-activation Z (M, S, E·d) -> (M, S, (E-1)·d).

    Matches :func:`reference_mix_and_gate` (the lines of ``AveyBLayer.forward`` between the two GEMMs).
    """
    z = z.contiguous()
    n_split, split_size, zw = z.shape
    ow = zw - width
    out = torch.empty(n_split, split_size, ow, device=z.device, dtype=z.dtype)
    if n_split == 0:
        return out
    has_mask = mask is not None
    mask_u8 = mask.contiguous().view(torch.uint8) if has_mask else z
    prec = _dot_precision(z.dtype)
    block_b = 128
    n_bypass = triton.cdiv(zw - 2 * width, block_b)
    if kind == "static":
        p = spatial_proj.to(z.dtype).contiguous()
        block_t, block_d, block_k = 64, 64, (64 if z.dtype != torch.float32 else 32)
        grid = (n_split, triton.cdiv(split_size, block_t), triton.cdiv(width, block_d) + n_bypass)
        _static_mix_kernel[grid](
            z, p, mask_u8, out, split_size, width, zw, ow,
            HAS_MASK=has_mask, ACT=ACT_IDS[act], BLOCK_T=block_t, BLOCK_D=block_d, BLOCK_K=block_k,
            BLOCK_B=block_b, PREC=prec, num_warps=4, num_stages=3,
        )
    else:
        coupled = kind == "coupled"
        p = spatial_proj.to(torch.float32).contiguous() if coupled else z
        tau_t = tau if (norm == "softmax" and tau is not None) else torch.ones((), device=z.device)
        block_s = max(16, triton.next_power_of_2(split_size))
        block_t = 64 if block_s <= 256 else 32
        block_t = min(block_t, block_s)
        block_d = 64 if z.dtype != torch.float32 else 32
        grid = (n_split, triton.cdiv(split_size, block_t), 1 + n_bypass)
        _dynamic_mix_kernel[grid](
            z, p, tau_t.detach().float().contiguous(), mask_u8, out, split_size, width, zw, ow, eps,
            HAS_MASK=has_mask, ACT=ACT_IDS[act], NORM=NORM_IDS[norm], COUPLED=coupled,
            BLOCK_T=block_t, BLOCK_S=block_s, BLOCK_D=block_d, BLOCK_B=block_b, PREC=prec,
            num_warps=8, num_stages=2,
        )
    return out


def reference_mix_and_gate(z, mask, kind, width, act, norm="sum", eps=1e-12, spatial_proj=None, tau=None):
    """What :func:`mix_and_gate` must match, written with the reference functions of ``aveyb.model.layers``."""
    z = ref.ACT_FNS[act](z)
    u, gate, bypass = z[..., :width], z[..., width:2 * width], z[..., 2 * width:]
    if mask is not None:
        u = u * mask.unsqueeze(-1).to(u.dtype)
    if kind == "static":
        mixed = ref.static_mix(u, spatial_proj)
    else:
        mixed = ref.dynamic_mix(u, mask, norm, eps, tau, spatial_proj if kind == "coupled" else None)
    return torch.cat([gate * mixed, bypass], dim=-1)


class _MixAndGate(torch.autograd.Function):
    """Triton forward; backward recomputes :func:`reference_mix_and_gate` and differentiates it."""

    @staticmethod
    def forward(ctx, z, mask, spatial_proj, tau, kind, width, act, norm, eps):
        ctx.save_for_backward(z, mask, spatial_proj, tau)
        ctx.args = (kind, width, act, norm, eps)
        return mix_and_gate(z, mask, kind, width, act, norm, eps, spatial_proj, tau)

    @staticmethod
    def backward(ctx, grad):
        z, mask, spatial_proj, tau = ctx.saved_tensors
        kind, width, act, norm, eps = ctx.args
        with torch.enable_grad():
            leaves = [None if t is None else t.detach().requires_grad_(ctx.needs_input_grad[n])
                      for n, t in ((0, z), (2, spatial_proj), (3, tau))]
            out = reference_mix_and_gate(leaves[0], mask, kind, width, act, norm, eps, leaves[1], leaves[2])
            wanted = [t for t in leaves if t is not None and t.requires_grad]
            grads = iter(torch.autograd.grad(out, wanted, grad)) if wanted else iter(())
        gz, gp, gt = (next(grads) if (t is not None and t.requires_grad) else None for t in leaves)
        return gz, None, gp, gt, None, None, None, None, None


def _activation_name(layer) -> str:
    for name, fn in ref.ACT_FNS.items():
        if fn is layer.act:
            return name
    raise ValueError("layer activation is not one of aveyb.model.layers.ACT_FNS")


def layer_forward(layer, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Fused ``AveyBLayer.forward(x, mask)``: (M, S, d) -> (M, S, d)."""
    width = x.shape[-1]
    normed = _RMSNorm.apply(x, layer.norm.weight, layer.norm.eps)
    z = F.linear(normed, layer.enricher.weight, layer.enricher.bias)
    kind = layer.kind
    mixed = _MixAndGate.apply(
        z, mask, getattr(layer, "spatial_proj", None) if kind in ("static", "coupled") else None,
        getattr(layer, "tau", None) if layer.dynamic_norm == "softmax" and kind != "static" else None,
        kind, width, _activation_name(layer), layer.dynamic_norm, layer.eps,
    )
    y = F.linear(mixed, layer.fuser.weight, layer.fuser.bias)
    return torch.addcmul(y, x, layer.alpha)
