"""The contextualization layer (SPEC.md section 3) composed of the fused operations. Matches
:func:`aveyb.model.layers.layer_forward`, and takes the same arguments: the layer's tensors
(``LayerWeights``), what it computes (``LayerSpec``), and the kernels' settings (``KernelOptions``).

Inference (no autograd) runs a layer as three launches:

1. ``enricher.enrich``: the enricher GEMM with RMSNorm folded in (gain in the cached weight, row
   scale from row statistics) and bias + activation in the epilogue -> Z = [U | G | Zb], U's padded
   rows zeroed;
2. ``mix.mix_and_gate``, in place on Z: G <- G ⊙ mix(U), so Z[:, d:] becomes [G ⊙ mix(U) ; Zb];
3. ``fuser.fuse``: the fuser GEMM on the view Z[:, d:] with bias + α·X in the epilogue, which also
   writes the row statistics the next layer's enricher needs (``backend.TritonBackend`` passes them on).

Neither RMSNorm(X), the pre-activation Z, act(Z), mix(U), the concatenation nor the residual is
a separate pass over memory.

Training (autograd on) runs :class:`LayerFunction`: one autograd function per layer, the operations'
forward and backward kernels around cuBLAS GEMMs, or, below AUTO_TRAIN_MIN_ELEMENTS elements per
layer input, :func:`aveyb.model.layers.layer_forward` itself under ``torch.compile``
(``KernelOptions.train_layer``; docs/kernels.md).
The layer is one autograd function rather than one per operation because the backward is fused
across them: the mix's backward writes ∂L/∂Zpre through act' for the one weight-gradient GEMM.
"""

from __future__ import annotations

import torch

from aveyb.kernels import enricher, fuser, mix
from aveyb.kernels._triton_utils import ACT_IDS, product_fp32
from aveyb.kernels.options import DEFAULT_OPTIONS, KernelOptions
from aveyb.kernels.rms_norm import RowStats, rms_norm_backward, rms_norm_forward, row_stats
from aveyb.model.layers import LayerSpec, LayerWeights, layer_forward

# ---- training: the reference layer compiled ----
_COMPILED: dict = {}


def compiled_layer(options: KernelOptions = DEFAULT_OPTIONS):
    """:func:`aveyb.model.layers.layer_forward` under ``torch.compile`` with ``dynamic`` =
    ``options.compile_dynamic``, or as it is where ``options.compile_layers`` is False (to debug)."""
    if not options.compile_layers:
        return layer_forward
    key = options.compile_dynamic
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(layer_forward, dynamic=options.compile_dynamic)
    return _COMPILED[key]


# Below this many elements per layer input (rows x width) a training step is bound by the host:
# the hand-written path launches about 25 kernels per layer, the compiled one fewer. Measured
# on an H100: at d = 768 the hand-written
# layer was faster from 16 x 1,024 rows, at 16 x 512 not; at d = 384 with 16,384 rows (`mini`) it
# was slower than even the eager reference.
AUTO_TRAIN_MIN_ELEMENTS = 16384 * 768


def train_with_kernels(elements: int, options: KernelOptions = DEFAULT_OPTIONS) -> bool:
    """Whether a layer trains through the hand-written kernels (:class:`LayerFunction`) rather than
    the compiled reference: ``options.train_layer`` ``triton``, or ``auto`` from
    AUTO_TRAIN_MIN_ELEMENTS elements (rows x width) per layer input."""
    if torch.compiler.is_compiling():  # a compiled model: Dynamo traces the reference layer itself
        return False
    mode = options.train_layer
    return mode == "triton" or (mode == "auto" and elements >= AUTO_TRAIN_MIN_ELEMENTS)


# ---- training: the fused layer ----
def compute_dtype(x: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class LayerFunction(torch.autograd.Function):
    """out = layer_forward(x, mask, weights, spec) on (R, d) rows, as a function of the layer's tensors."""

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


def _spatial_proj(w: LayerWeights, spec: LayerSpec):
    return w.spatial_proj if spec.kind in ("static", "coupled") else None


def _tau(w: LayerWeights, spec: LayerSpec):
    return w.tau if spec.dynamic_norm == "softmax" and spec.kind != "static" else None


def layer_train_forward(x: torch.Tensor, mask: torch.Tensor | None, w: LayerWeights, spec: LayerSpec) -> torch.Tensor:
    """:func:`~aveyb.model.layers.layer_forward` (M, S, d) with autograd, through :class:`LayerFunction`."""
    n_split, split, width = x.shape
    meta = (spec.kind, spec.hidden_act, spec.dynamic_norm, spec.eps, spec.eps, split)
    flat_mask = None if mask is None else mask.reshape(-1).contiguous()
    out = LayerFunction.apply(x.reshape(-1, width), flat_mask, w.norm, w.enricher_weight, w.enricher_bias,
                              w.fuser_weight, w.fuser_bias, w.alpha, _spatial_proj(w, spec), _tau(w, spec), meta)
    return out.view(n_split, split, width)


# ---- the layer ----
def layer_step(x: torch.Tensor, mask: torch.Tensor | None, w: LayerWeights, spec: LayerSpec,
               options: KernelOptions = DEFAULT_OPTIONS, stats: RowStats | None = None):
    """Fused :func:`~aveyb.model.layers.layer_forward` -> (out, row statistics of out or None).

    ``stats`` are x's row statistics when the previous fused layer made x (else computed here).
    With autograd on, the training path runs (``options.train_layer``) and no statistics are returned.
    """
    n_split, split_size, width = x.shape
    grad = torch.is_grad_enabled() and (x.requires_grad or any(t is not None and t.requires_grad for t in w))
    if grad and train_with_kernels(x.numel(), options):
        return layer_train_forward(x.contiguous(), mask, w, spec), None
    if grad:
        return compiled_layer(options)(x, mask, w, spec), None
    x2 = x.contiguous().view(-1, width)
    if stats is None:
        stats = row_stats(x2)
    weight = enricher.scaled_enricher_weight(w.enricher_weight, w.norm, x.dtype)
    bias_e = w.enricher_bias.to(x.dtype)
    z = enricher.enrich(x2, stats, weight, bias_e, mask, ACT_IDS[spec.hidden_act], spec.eps, options)
    mix.mix_and_gate(z.view(n_split, split_size, -1), mask, spec.kind, width, spec.dynamic_norm, spec.eps,
                     _spatial_proj(w, spec), _tau(w, spec))
    out, stats = fuser.fuse(z[:, width:], w.fuser_weight.to(x.dtype), w.fuser_bias.to(x.dtype), x2, w.alpha,
                            options.gemm_tma)
    return out.view(n_split, split_size, width), stats


def fused_layer_forward(x: torch.Tensor, mask: torch.Tensor | None, w: LayerWeights, spec: LayerSpec,
                        options: KernelOptions = DEFAULT_OPTIONS) -> torch.Tensor:
    """Fused :func:`~aveyb.model.layers.layer_forward`: (M, S, d), (M, S) bool or None -> (M, S, d)."""
    return layer_step(x, mask, w, spec, options)[0]
