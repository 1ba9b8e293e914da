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

import os

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from aveyb.kernels.tuning import dot_precision, tunable
from aveyb.model import layers as ref

ACT_IDS = {"gelu": 0, "gelu_tanh": 1, "relu": 2, "silu": 3}
NORM_IDS = {"sum": 0, "softmax": 1, "none": 2, "signed_sum": 3}


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
_ACTIVATE_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_D": bd, "BLOCK_B": bb}, num_warps=w)
    for bt, bd, bb, w in ((32, 128, 256, 4), (16, 256, 512, 4), (64, 128, 256, 8), (32, 256, 512, 8))
]


@triton.autotune(configs=tunable(_ACTIVATE_CONFIGS), key=["D", "ZW", "NEED_NORM"])
@triton.jit
def _activate_kernel(
    z_ptr, mask_ptr, u_ptr, inv_ptr, out_ptr, R, D, ZW, OW, eps,
    HAS_MASK: tl.constexpr, ACT: tl.constexpr, NEED_NORM: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_B: tl.constexpr,
):
    """One pass over the enricher output Z (R rows of width ZW = E·d), activation applied once:

    column block 0 of the grid: U = act(Z[:, :d]) · mask -> u (R, d), and 1 / max(‖U‖, eps) -> inv;
    column blocks >= 1: act(Z[:, 2d:]) -> out[:, d:] (the bypass half of the fuser input).
    """
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    row_ok = rows < R
    blk = tl.program_id(1)
    r64 = rows.to(tl.int64)
    if blk == 0:
        if HAS_MASK:
            real = row_ok & (tl.load(mask_ptr + r64, mask=row_ok, other=0) != 0)
        else:
            real = row_ok
        dd0 = tl.arange(0, BLOCK_D)
        sq = tl.zeros((BLOCK_T,), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            dd = d0 + dd0
            ok = row_ok[:, None] & (dd < D)[None, :]
            u = _act(tl.load(z_ptr + r64[:, None] * ZW + dd[None, :], mask=ok, other=0.0).to(tl.float32), ACT)
            u = tl.where(real[:, None] & (dd < D)[None, :], u, 0.0).to(u_ptr.dtype.element_ty)
            tl.store(u_ptr + r64[:, None] * D + dd[None, :], u, mask=ok)
            if NEED_NORM:
                uf = u.to(tl.float32)
                sq += tl.sum(uf * uf, axis=1)
        if NEED_NORM:
            tl.store(inv_ptr + r64, 1.0 / tl.maximum(tl.sqrt(sq), eps), mask=row_ok)
    else:
        cols = (blk - 1) * BLOCK_B + tl.arange(0, BLOCK_B)
        ok = row_ok[:, None] & (cols < ZW - 2 * D)[None, :]
        z = tl.load(z_ptr + r64[:, None] * ZW + 2 * D + cols[None, :], mask=ok, other=0.0).to(tl.float32)
        tl.store(out_ptr + r64[:, None] * OW + D + cols[None, :], _act(z, ACT).to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _gate_store(z_ptr, out_ptr, m, rows, dd, mixed, S, D, ZW, OW, ACT: tl.constexpr):
    """out[m, rows, dd] = act(G[m, rows, dd]) * mixed, G = Z[..., d:2d] (activation applied here, once)."""
    ok = (rows < S)[:, None] & (dd < D)[None, :]
    rbase = m.to(tl.int64) * S + rows
    g = _act(tl.load(z_ptr + rbase[:, None] * ZW + D + dd[None, :], mask=ok, other=0.0).to(tl.float32), ACT)
    g = g.to(z_ptr.dtype.element_ty).to(tl.float32)
    tl.store(out_ptr + rbase[:, None] * OW + dd[None, :], (g * mixed).to(out_ptr.dtype.element_ty), mask=ok)


_STATIC_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_D": bd, "BLOCK_K": bk}, num_warps=w, num_stages=st)
    for bt, bd, bk, w, st in ((64, 128, 64, 4, 3), (128, 128, 64, 8, 3), (64, 64, 64, 4, 3),
                              (128, 64, 64, 4, 3), (64, 128, 32, 4, 4), (32, 128, 32, 4, 3))
]


@triton.autotune(configs=tunable(_STATIC_CONFIGS), key=["S", "D", "ZW"])
@triton.jit
def _static_mix_kernel(
    z_ptr, u_ptr, p_ptr, out_ptr, S, D, ZW, OW,
    ACT: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr, PREC: tl.constexpr,
):
    """out[m, rows, dd] = act(G) * (P @ U)[rows, dd]   (aveyb.model.layers.static_mix, then the gate)."""
    m = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    dd = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    kk = tl.arange(0, BLOCK_K)
    ubase = m.to(tl.int64) * S
    acc = tl.zeros((BLOCK_T, BLOCK_D), dtype=tl.float32)
    for k0 in range(0, S, BLOCK_K):
        k_ok = (k0 + kk) < S
        p = tl.load(p_ptr + rows[:, None] * S + (k0 + kk)[None, :], mask=(rows < S)[:, None] & k_ok[None, :], other=0.0)
        u = tl.load(u_ptr + (ubase + k0 + kk)[:, None] * D + dd[None, :], mask=k_ok[:, None] & (dd < D)[None, :],
                    other=0.0)
        acc = tl.dot(p, u, acc, input_precision=PREC)
    _gate_store(z_ptr, out_ptr, m, rows, dd, acc, S, D, ZW, OW, ACT)


_DYNAMIC_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_D": bd}, num_warps=w, num_stages=st)
    for bt, bd, w, st in ((64, 64, 4, 2), (32, 64, 4, 2), (32, 128, 4, 2), (64, 128, 8, 2),
                          (16, 128, 4, 2), (32, 32, 4, 2), (16, 64, 4, 2))
]


@triton.autotune(configs=tunable(_DYNAMIC_CONFIGS), key=["S", "D", "ZW", "NORM", "COUPLED"])
@triton.jit
def _dynamic_mix_kernel(
    z_ptr, u_ptr, a_ptr, inv_ptr, p_ptr, tau_ptr, mask_ptr, out_ptr, S, D, ZW, OW, eps,
    HAS_MASK: tl.constexpr, ACT: tl.constexpr, NORM: tl.constexpr, COUPLED: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr, PREC: tl.constexpr,
):
    """out[m, rows, dd] = act(G) * (norm(Â [⊙ P]) @ U)[rows, dd]   (aveyb.model.layers.dynamic_mix + gate).

    ``a`` holds U Uᵀ per split (one batched GEMM); the cosines Â = inv_t · (U Uᵀ)_tk · inv_k, the
    coupling with P and the row normalisation happen here in registers, row block by row block.
    """
    m = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    dd = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    keys = tl.arange(0, BLOCK_S)
    key_in = keys < S
    row_in = rows < S
    base = m.to(tl.int64) * S
    a = tl.load(a_ptr + (base + rows)[:, None] * S + keys[None, :], mask=row_in[:, None] & key_in[None, :],
                other=0.0).to(tl.float32)
    inv_r = tl.load(inv_ptr + base + rows, mask=row_in, other=0.0)
    inv_k = tl.load(inv_ptr + base + keys, mask=key_in, other=0.0)
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
    u = tl.load(u_ptr + (base + keys)[:, None] * D + dd[None, :], mask=key_in[:, None] & (dd < D)[None, :], other=0.0)
    mixed = tl.dot(a.to(u_ptr.dtype.element_ty), u, input_precision=PREC)
    _gate_store(z_ptr, out_ptr, m, rows, dd, mixed, S, D, ZW, OW, ACT)


def mix_and_gate(z: torch.Tensor, mask: torch.Tensor | None, kind: str, width: int, act: str,
                 norm: str = "sum", eps: float = 1e-12, spatial_proj: torch.Tensor | None = None,
                 tau: torch.Tensor | None = None) -> torch.Tensor:
    """Triton [G ⊙ mix(U) ; act(Zb)] from the enricher's pre-activation Z (M, S, E·d) -> (M, S, (E-1)·d).

    Matches :func:`reference_mix_and_gate` (the lines of ``AveyBLayer.forward`` between the two GEMMs).
    Three launches: ``_activate_kernel`` (activation once; U, its inverse row norms, the bypass
    half), for dynamic layers one batched GEMM U Uᵀ (S x S per split, cuBLAS), then the mix kernel.
    """
    z = z.contiguous()
    n_split, split_size, zw = z.shape
    ow = zw - width
    rows = n_split * split_size
    out = torch.empty(n_split, split_size, ow, device=z.device, dtype=z.dtype)
    if n_split == 0:
        return out
    has_mask = mask is not None
    mask_u8 = mask.contiguous().view(torch.uint8) if has_mask else z
    prec = dot_precision(z.dtype)
    dynamic = kind != "static"
    u = torch.empty(n_split, split_size, width, device=z.device, dtype=z.dtype)
    inv = torch.empty(rows, device=z.device, dtype=torch.float32) if dynamic else u
    grid = lambda meta: (triton.cdiv(rows, meta["BLOCK_T"]), 1 + triton.cdiv(zw - 2 * width, meta["BLOCK_B"]))
    _activate_kernel[grid](
        z, mask_u8, u, inv, out, rows, width, zw, ow, eps,
        HAS_MASK=has_mask, ACT=ACT_IDS[act], NEED_NORM=dynamic,
    )
    if not dynamic:
        p = spatial_proj.to(z.dtype).contiguous()
        grid = lambda meta: (n_split, triton.cdiv(split_size, meta["BLOCK_T"]), triton.cdiv(width, meta["BLOCK_D"]))
        _static_mix_kernel[grid](z, u, p, out, split_size, width, zw, ow, ACT=ACT_IDS[act], PREC=prec)
        return out
    a = torch.bmm(u, u.transpose(1, 2))  # U Uᵀ per split: (M, S, S), in z's dtype
    coupled = kind == "coupled"
    p = spatial_proj.to(torch.float32).contiguous() if coupled else z
    tau_t = tau.detach().float().contiguous() if (norm == "softmax" and tau is not None) else inv
    block_s = max(16, triton.next_power_of_2(split_size))
    grid = lambda meta: (n_split, triton.cdiv(split_size, meta["BLOCK_T"]), triton.cdiv(width, meta["BLOCK_D"]))
    _dynamic_mix_kernel[grid](
        z, u, a, inv, p, tau_t, mask_u8, out, split_size, width, zw, ow, eps,
        HAS_MASK=has_mask, ACT=ACT_IDS[act], NORM=NORM_IDS[norm], COUPLED=coupled, BLOCK_S=block_s, PREC=prec,
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


_COMPILED: dict = {}


def _maybe_compiled(fn):
    """``fn`` under ``torch.compile`` for the recompute-backward (AVEYB_COMPILE_BACKWARD=0 turns it off)."""
    if os.environ.get("AVEYB_COMPILE_BACKWARD", "1") == "0":
        return fn
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=True)
    return _COMPILED[fn]


class _MixAndGate(torch.autograd.Function):
    """Triton forward; backward recomputes :func:`reference_mix_and_gate` (compiled) and differentiates it."""

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
            out = _maybe_compiled(reference_mix_and_gate)(leaves[0], mask, kind, width, act, norm, eps,
                                                          leaves[1], leaves[2])
            wanted = [t for t in leaves if t is not None and t.requires_grad]
            grads = iter(torch.autograd.grad(out, wanted, grad)) if wanted else iter(())
        gz, gp, gt = (next(grads) if (t is not None and t.requires_grad) else None for t in leaves)
        return gz, None, gp, gt, None, None, None, None, None


@triton.jit
def _residual_kernel(y_ptr, x_ptr, alpha_ptr, out_ptr, n, BLOCK: tl.constexpr):
    """out = y + alpha * x (alpha a 0-dim tensor), the layer's last line."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    alpha = tl.load(alpha_ptr).to(tl.float32)
    y = tl.load(y_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, (y + alpha * x).to(out_ptr.dtype.element_ty), mask=ok)


def residual(y: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    out = torch.empty(y.shape, device=y.device, dtype=torch.promote_types(torch.promote_types(y.dtype, x.dtype),
                                                                          alpha.dtype))
    n = y.numel()
    _residual_kernel[(triton.cdiv(n, 4096),)](y.contiguous(), x.contiguous(), alpha, out, n, BLOCK=4096, num_warps=8)
    return out


def _activation_name(layer) -> str:
    for name, fn in ref.ACT_FNS.items():
        if fn is layer.act:
            return name
    raise ValueError("layer activation is not one of aveyb.model.layers.ACT_FNS")


def _reference_layer(x, mask, norm_w, norm_eps, we, be, wf, bf, alpha, proj, tau, kind, width, act, norm, eps):
    """``AveyBLayer.forward`` as one function of its tensors (what the training path compiles)."""
    z = F.linear(ref.rms_norm(x, norm_w, norm_eps), we, be)
    mixed = reference_mix_and_gate(z, mask, kind, width, act, norm, eps, proj, tau)
    return F.linear(mixed, wf, bf) + alpha * x


def train_path() -> str:
    """How :func:`layer_forward` runs when autograd is on: "compiled" (default) or "recompute".

    "compiled": the reference layer under ``torch.compile`` (Inductor generates the backward);
    "recompute": the Triton forward kernels, and a backward that recomputes the reference. Set
    with the environment variable AVEYB_FUSED_TRAIN; the measured speed of both is in docs/kernels.md.
    """
    path = os.environ.get("AVEYB_FUSED_TRAIN", "compiled")
    if path not in ("compiled", "recompute"):
        raise ValueError(f"AVEYB_FUSED_TRAIN={path!r}; choose 'compiled' or 'recompute'")
    return path


def layer_forward(layer, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Fused ``AveyBLayer.forward(x, mask)``: (M, S, d) -> (M, S, d).

    Without autograd (inference) the Triton kernels run directly. With autograd, see
    :func:`train_path`.
    """
    width = x.shape[-1]
    kind = layer.kind
    proj = getattr(layer, "spatial_proj", None) if kind in ("static", "coupled") else None
    tau = getattr(layer, "tau", None) if layer.dynamic_norm == "softmax" and kind != "static" else None
    act = _activation_name(layer)
    grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in layer.parameters()))
    if not grad:
        normed = rms_norm(x, layer.norm.weight, layer.norm.eps)
        z = F.linear(normed, layer.enricher.weight, layer.enricher.bias)
        mixed = mix_and_gate(z, mask, kind, width, act, layer.dynamic_norm, layer.eps, proj, tau)
        y = F.linear(mixed, layer.fuser.weight, layer.fuser.bias)
        return residual(y, x, layer.alpha)
    if train_path() == "compiled":
        return _maybe_compiled(_reference_layer)(
            x, mask, layer.norm.weight, layer.norm.eps, layer.enricher.weight, layer.enricher.bias,
            layer.fuser.weight, layer.fuser.bias, layer.alpha, proj, tau, kind, width, act, layer.dynamic_norm,
            layer.eps)
    normed = _RMSNorm.apply(x, layer.norm.weight, layer.norm.eps)
    z = F.linear(normed, layer.enricher.weight, layer.enricher.bias)
    mixed = _MixAndGate.apply(z, mask, proj, tau, kind, width, act, layer.dynamic_norm, layer.eps)
    y = F.linear(mixed, layer.fuser.weight, layer.fuser.bias)
    return y + layer.alpha * x
