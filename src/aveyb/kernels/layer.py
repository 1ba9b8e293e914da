"""The contextualization layer (SPEC.md section 3) composed of the fused operations. Matches
``aveyb.model.layers.AveyBLayer.forward``.

Inference (no autograd) runs a layer as three launches:

1. ``enricher.enrich``: the enricher GEMM with RMSNorm folded in (gain in the cached weight, row
   scale from row statistics) and bias + activation in the epilogue -> Z = [U | G | Zb], U's padded
   rows zeroed;
2. ``mix.mix_and_gate``, in place on Z: G <- G ⊙ mix(U), so Z[:, d:] becomes [G ⊙ mix(U) ; Zb];
3. ``fuser.fuse``: the fuser GEMM on the view Z[:, d:] with bias + α·X in the epilogue, which also
   writes the row statistics the next layer's enricher needs (:func:`run_layers` passes them on).

Neither RMSNorm(X), the pre-activation Z, act(Z), mix(U), the concatenation nor the residual is
a separate pass over memory.

Training (autograd on) runs :class:`LayerFunction`: one autograd function per layer, the operations'
forward and backward kernels around cuBLAS GEMMs, or, below AUTO_TRAIN_MIN_ELEMENTS elements per
layer input, the reference layer under ``torch.compile`` (``train_layer_mode``; docs/kernels.md).
The layer is one autograd function rather than one per operation because the backward is fused
across them: the mix's backward writes ∂L/∂Zpre through act' for the one weight-gradient GEMM.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from aveyb.kernels import enricher, fuser, mix
from aveyb.kernels._triton_utils import ACT_IDS, env_choice, product_fp32
from aveyb.kernels.rms_norm import RowStats, rms_norm_backward, rms_norm_forward, row_stats
from aveyb.model import layers as ref


# ---- training: the reference layer compiled ----
def _reference_layer(x, mask, norm_w, norm_eps, we, be, wf, bf, alpha, proj, tau, kind, width, act, norm, eps):
    """``AveyBLayer.forward`` as one function of its tensors (what the training path compiles)."""
    z = F.linear(ref.rms_norm(x, norm_w, norm_eps), we, be)
    mixed = mix.reference_mix_and_gate(z, mask, kind, width, act, norm, eps, proj, tau)
    return F.linear(mixed, wf, bf) + alpha * x


_COMPILED: dict = {}


_DYNAMIC = {"auto": None, "1": True, "0": False}


def _compiled(fn):
    """``fn`` under ``torch.compile`` (AVEYB_COMPILE_LAYERS=0 runs it eagerly, e.g. to debug).

    AVEYB_COMPILE_DYNAMIC: ``auto`` (default: specialise on the first shapes, go dynamic if they
    change), ``1`` (dynamic from the start), ``0`` (recompile per shape)."""
    if os.environ.get("AVEYB_COMPILE_LAYERS", "1") == "0":
        return fn
    choice = env_choice("AVEYB_COMPILE_DYNAMIC", _DYNAMIC, "auto")
    key = (fn, choice)
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(fn, dynamic=_DYNAMIC[choice])
    return _COMPILED[key]


# Below this many elements per layer input (rows x width) a training step is bound by the host:
# the hand-written path launches about 25 kernels per layer, the compiled one fewer. Measured
# on an H100: at d = 768 the hand-written
# layer was faster from 16 x 1,024 rows, at 16 x 512 not; at d = 384 with 16,384 rows (`mini`) it
# was slower than even the eager reference.
AUTO_TRAIN_MIN_ELEMENTS = 16384 * 768


def train_layer_mode() -> str:
    """AVEYB_TRAIN_LAYER: how a layer trains (autograd on). ``triton``: the hand-written forward
    and backward kernels of :class:`LayerFunction` around cuBLAS GEMMs; ``compile``: the reference layer
    under ``torch.compile`` (Inductor's kernels); ``auto`` (default): ``triton`` from
    AUTO_TRAIN_MIN_ELEMENTS elements (rows x width) per layer input, ``compile`` below."""
    return env_choice("AVEYB_TRAIN_LAYER", ("auto", "triton", "compile"), "auto")


def _train_with_kernels(elements: int) -> bool:
    if torch.compiler.is_compiling():  # a compiled model: Dynamo traces the reference layer itself
        return False
    mode = train_layer_mode()
    return mode == "triton" or (mode == "auto" and elements >= AUTO_TRAIN_MIN_ELEMENTS)


# ---- training: the fused layer ----
def compute_dtype(x: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class LayerFunction(torch.autograd.Function):
    """out = AveyBLayer.forward(x, mask) on (R, d) rows, as a function of the layer's tensors."""

    @staticmethod
    def forward(ctx, x, mask, g, we, be, wf, bf, alpha, proj, tau, meta):
        kind, act, norm, norm_eps, eps, split = meta
        dtype = compute_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            rows, width = x.shape
            we_c, be_c, wf_c, bf_c = (t.to(dtype) for t in (we, be, wf, bf))
            xn, rstd = rms_norm_forward(x, g, norm_eps, dtype)
            zpre = torch.addmm(be_c, xn[:, :width], we_c.t())
            z = enricher.activate(zpre, mask, width, act)
            mixu = torch.empty(rows, width, device=x.device, dtype=dtype)
            mix.mix_and_gate(z.view(-1, split, zpre.shape[1]), None if mask is None else mask.view(-1, split), kind,
                             width, norm, eps, proj, tau, save=mixu)
            y = torch.addmm(bf_c, z[:, width:], wf_c.t())
            out = fuser.residual(y, x, alpha, dtype)
        ctx.save_for_backward(x, mask, g, we_c, wf_c, alpha, proj, tau, xn, rstd, zpre, z, mixu)
        ctx.meta, ctx.dtypes = meta, (we.dtype, be.dtype, wf.dtype, bf.dtype)
        return out

    @staticmethod
    def backward(ctx, dout):
        x, mask, g, we_c, wf_c, alpha, proj, tau, xn, rstd, zpre, z, mixu = ctx.saved_tensors
        kind, act, norm, norm_eps, eps, split = ctx.meta
        width, dtype = x.shape[1], zpre.dtype
        with torch.autocast(x.device.type, enabled=False):
            dout = dout.contiguous()
            dy, dbf = fuser.cast_colsum(dout, dtype)
            f = z[:, width:]
            df = dy @ wf_c
            dwf = product_fp32(torch.mm, dy.t(), f)
            dzpre, dproj, dtau = mix.mix_and_gate_backward(df, z, zpre, mixu, mask, proj, tau, kind, act, norm, eps,
                                                           split)
            dwe_ext = product_fp32(torch.mm, dzpre.t(), xn)  # [dW_e | db_e | 0 …]: xn's ones column gives the bias
            dwe, dbe = dwe_ext[:, :width], dwe_ext[:, width]
            dxn = dzpre @ we_c
            dx, dg, dalpha = rms_norm_backward(dxn, x, rstd, g, dout, alpha)
        dwe_t, dbe_t, dwf_t, dbf_t = (t.to(d) for t, d in zip((dwe, dbe, dwf, dbf), ctx.dtypes))
        return (dx, None, dg.to(g.dtype), dwe_t, dbe_t, dwf_t, dbf_t, dalpha.to(alpha.dtype).reshape(alpha.shape),
                None if dproj is None else dproj.to(proj.dtype), None if dtau is None else dtau.to(tau.dtype),
                None)


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


# ---- the layer, and the layers in turn ----
def _activation_name(layer) -> str:
    for name, fn in ref.ACT_FNS.items():
        if fn is layer.act:
            return name
    raise ValueError("layer activation is not one of aveyb.model.layers.ACT_FNS")


def layer_step(layer, x: torch.Tensor, mask: torch.Tensor | None, stats: RowStats | None = None):
    """Fused ``AveyBLayer.forward(x, mask)`` -> (out, row statistics of out or None).

    ``stats`` are x's row statistics when the previous fused layer made x (else computed here).
    With autograd on, the training path runs (``train_layer_mode``) and no statistics are returned.
    """
    n_split, split_size, width = x.shape
    kind = layer.kind
    proj = getattr(layer, "spatial_proj", None) if kind in ("static", "coupled") else None
    tau = getattr(layer, "tau", None) if layer.dynamic_norm == "softmax" and kind != "static" else None
    act = _activation_name(layer)
    grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in layer.parameters()))
    if grad and _train_with_kernels(x.numel()):
        return layer_train_forward(layer, x.contiguous(), mask, act), None
    if grad:
        out = _compiled(_reference_layer)(
            x, mask, layer.norm.weight, layer.norm.eps, layer.enricher.weight, layer.enricher.bias,
            layer.fuser.weight, layer.fuser.bias, layer.alpha, proj, tau, kind, width, act, layer.dynamic_norm,
            layer.eps)
        return out, None
    x2 = x.contiguous().view(-1, width)
    if stats is None:
        stats = row_stats(x2)
    weight = enricher.scaled_enricher_weight(layer, x.dtype)
    bias_e = layer.enricher.bias.to(x.dtype)
    z = enricher.enrich(x2, stats, weight, bias_e, mask, ACT_IDS[act], layer.norm.eps)
    mix.mix_and_gate(z.view(n_split, split_size, -1), mask, kind, width, layer.dynamic_norm, layer.eps, proj, tau)
    out, stats = fuser.fuse(z[:, width:], layer.fuser.weight.to(x.dtype), layer.fuser.bias.to(x.dtype), x2,
                            layer.alpha)
    return out.view(n_split, split_size, width), stats


def layer_forward(layer, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Fused ``AveyBLayer.forward(x, mask)``: (M, S, d), (M, S) bool or None -> (M, S, d)."""
    return layer_step(layer, x, mask)[0]


def run_layers(layers, h: torch.Tensor, mask: torch.Tensor | None):
    """Yield each layer's output in turn, passing row statistics from one fused layer to the next."""
    stats = None
    for layer in layers:
        h, stats = layer_step(layer, h, mask, stats)
        yield h
