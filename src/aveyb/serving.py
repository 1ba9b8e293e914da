"""Fast CPU inference of Avey-B: the layer stack run split-chunk by split-chunk in reused buffers.

The layers work on every split independently (SPEC 3), so the whole 30-layer stack can run on a
chunk of splits at a time (``chunk_rows`` rows, 1,024 by default) instead of on the whole input at
once, and each layer can write into buffers allocated once per call:

* memory: a layer's intermediates are ``chunk_rows`` × 4d floats (12 MB at d = 768), not T × 4d
  (100 MB at 8,192 tokens); big temporaries are fresh pages on every allocation (glibc maps
  blocks over 32 MB anew each time), and first-touching them costs about as much as the
  element-wise work itself. Small, reused buffers also stay in cache between the GEMMs.
* copies: the enricher's output Z = [U | G | Zb] is one buffer; GELU runs in place; G ⊙ mix(U)
  is written over G, so the fuser reads [G ⊙ mix(U) ; Zb] as a strided view of Z (no
  ``torch.cat``); the residual is added into the fuser's output.

It computes the same function as the reference model, with the same operations on the same
values: on the CPU the outputs are bitwise equal in our tests at the lengths we tried (the
tests check 1e-5 relative, padded batches, lengths not multiples of S;
``tests/test_cpu_fast_path.py``). Layers other than static / dynamic with exact GELU (coupled
layers, other activations) and int8 layers (:mod:`aveyb.quantize`) run as their modules, chunk by
chunk. Inference only (``torch.inference_mode``); ``output_hidden_states`` runs the reference.

``compile_for_cpu`` is the other candidate: ``torch.compile`` (Inductor) with frozen weights.
``aveyb bench --device cpu`` measures both (impls ``cpu-fast`` and ``compiled``), int8 and ONNX
Runtime beside the reference: ``results/bench/README.md``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

DEFAULT_CHUNK_ROWS = 1024


class CPUEncoder(nn.Module):
    """An Avey-B encoder (``AveyBModel``) for CPU inference, sharing its weights.

    Same call and outputs as ``AveyBModel`` (``last_hidden_state``; padded positions are zeros).
    """

    def __init__(self, encoder: nn.Module, chunk_rows: int = DEFAULT_CHUNK_ROWS):
        super().__init__()
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        self.config, self.chunk_rows = encoder.config, chunk_rows
        self.embed, self.ranker, self.layers = encoder.embed, encoder.ranker, encoder.layers
        self._encoder = [encoder]  # not a submodule: its parameters are already ours
        self.eval()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_hidden_states=None,
                return_dict=None, **kwargs):
        from transformers.modeling_outputs import BaseModelOutput

        from aveyb.model.modeling_aveyb import check_inputs
        from aveyb.model.ranker import rank_and_compress

        config = self.config
        if output_hidden_states or (output_hidden_states is None and config.output_hidden_states):
            return self._encoder[0](input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                                    output_hidden_states=True, return_dict=return_dict, **kwargs)
        batch, length = check_inputs(input_ids, attention_mask, inputs_embeds, config.vocab_size)
        with torch.inference_mode():
            x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
            mask = attention_mask.bool() if attention_mask is not None else None
            h, row_mask = rank_and_compress(x, mask, getattr(self.ranker, "down_proj", None), config)
            h = run_layers_chunked(self.layers, h, row_mask, config, self.chunk_rows)
            out = self._encoder[0].unsplit(h, batch, length)
            if mask is not None:
                out = torch.where(mask.unsqueeze(-1), out, torch.zeros((), dtype=out.dtype))
        return_dict = return_dict if return_dict is not None else config.return_dict
        return BaseModelOutput(last_hidden_state=out) if return_dict else (out,)


def run_layers_chunked(layers, h: Tensor, mask: Tensor | None, config, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Tensor:
    """Every layer on ``h`` (M, R, d), a chunk of ``chunk_rows // R`` splits at a time."""
    n_splits, rows, width = h.shape
    per_chunk = max(1, chunk_rows // rows)
    out = torch.empty_like(h)
    bufs = _Buffers(min(per_chunk, n_splits) * rows, width, config.expansion_factor * width, h.dtype)
    for start in range(0, n_splits, per_chunk):
        x = h[start:start + per_chunk]
        m = mask[start:start + per_chunk] if mask is not None else None
        for layer in layers:
            x = _fast_layer(x, m, layer, config, bufs) if _fast_layer_applies(layer, config) else layer(x, m)
        out[start:start + per_chunk] = x
    return out


class _Buffers:
    """Per-call scratch: RMSNorm output, Z, the residual term, and two outputs used in turn."""

    def __init__(self, rows: int, width: int, z_width: int, dtype):
        self.norm = torch.empty(rows, width, dtype=dtype)
        self.z = torch.empty(rows, z_width, dtype=dtype)
        self.residual = torch.empty(rows, width, dtype=dtype)
        self.outs = [torch.empty(rows, width, dtype=dtype), torch.empty(rows, width, dtype=dtype)]
        self.turn = 0

    def next_out(self, rows: int) -> Tensor:
        self.turn ^= 1
        return self.outs[self.turn][:rows]


def _fast_layer_applies(layer, config) -> bool:
    return (getattr(layer, "kind", None) in ("static", "dynamic") and config.hidden_act == "gelu"
            and isinstance(getattr(layer, "enricher", None), nn.Linear)
            and isinstance(getattr(layer, "fuser", None), nn.Linear)
            and layer.enricher.weight.dtype == torch.float32)


def _fast_layer(x: Tensor, mask: Tensor | None, layer, config, bufs: _Buffers) -> Tensor:
    """out = W_f · [G ⊙ mix(U) ; Zb] + b_f + α · X (SPEC 3), the reference's operations in
    buffers: ``aveyb.model.layers`` (rms_norm, enrich, contextualize, the layer's forward)."""
    from aveyb.model.layers import dynamic_mix, static_mix

    n, rows_per_split, width = x.shape
    rows = n * rows_per_split
    x2 = x.reshape(rows, width)
    normed = torch.mul(x2, torch.rsqrt(x2.pow(2).mean(dim=-1, keepdim=True) + config.eps), out=bufs.norm[:rows])
    normed.mul_(layer.norm.weight)
    z = torch.addmm(layer.enricher.bias, normed, layer.enricher.weight.t(), out=bufs.z[:rows])
    torch.ops.aten.gelu_(z)  # exact (erf) GELU, in place
    u = z[:, :width].view(n, rows_per_split, width)
    gate = z[:, width:2 * width].view(n, rows_per_split, width)
    if mask is not None:
        u.mul_(mask.unsqueeze(-1).to(u.dtype))  # U is only mixed: zeroing it in place is safe
    if layer.kind == "static":
        mixed = static_mix(u, layer.spatial_proj)
    else:
        mixed = dynamic_mix(u, mask, config.dynamic_norm, config.eps, getattr(layer, "tau", None))
    gate.mul_(mixed)  # z[:, width:] is now [G ⊙ mix(U) ; Zb], the fuser's input
    out = torch.addmm(layer.fuser.bias, z[:, width:], layer.fuser.weight.t(), out=bufs.next_out(rows))
    out.add_(torch.mul(x2, layer.alpha, out=bufs.residual[:rows]))
    return out.view(n, rows_per_split, width)


def optimize_for_cpu(model: nn.Module, chunk_rows: int = DEFAULT_CHUNK_ROWS, int8: bool = False) -> nn.Module:
    """The fast CPU inference path of any Avey-B model or head.

    An ``AveyBModel`` comes back as a :class:`CPUEncoder` sharing its weights. A head model is
    changed in place: its ``model`` (the encoder) becomes a :class:`CPUEncoder` (``head.model =
    head.model._encoder[0]`` undoes it); its head runs as before. ``int8=True`` first applies
    :func:`aveyb.quantize.quantize_dynamic_int8` (a quantised copy; an opt-in approximation).
    """
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("optimize_for_cpu is for a model on the CPU (on a GPU use the fused kernels)")
    if int8:
        from aveyb.quantize import quantize_dynamic_int8

        model = quantize_dynamic_int8(model)
    model.eval()
    if hasattr(model, "ranker") and hasattr(model, "layers"):
        return CPUEncoder(model, chunk_rows)
    encoder = getattr(model, "model", None)
    if encoder is None or not hasattr(encoder, "ranker"):
        raise ValueError(f"{type(model).__name__} is not an Avey-B model or head")
    if not isinstance(encoder, CPUEncoder):
        model.model = CPUEncoder(encoder, chunk_rows)
    return model


class CompiledForCPU(nn.Module):
    """``model`` under ``torch.compile`` (Inductor, ``freezing``: weights as constants, pre-packed
    for oneDNN), called under inference mode after the eager input checks. The frozen weights are
    taken at the first call of each shape; the first call of a new shape compiles (a C++ compiler
    is needed)."""

    def __init__(self, model: nn.Module, freezing: bool = True, dynamic: bool | None = None):
        super().__init__()
        self.model = model.eval()
        self.config = model.config
        self.compiled = torch.compile(model, dynamic=dynamic, options={"freezing": freezing})

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        from aveyb.model.modeling_aveyb import check_inputs

        check_inputs(input_ids, attention_mask, kwargs.get("inputs_embeds"), self.config.vocab_size)
        with torch.inference_mode():
            return self.compiled(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


def compile_for_cpu(model: nn.Module, *, freezing: bool = True, dynamic: bool | None = None) -> CompiledForCPU:
    """``torch.compile`` of any Avey-B model or head for CPU inference (fp32, exact up to rounding)."""
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("compile_for_cpu is for a model on the CPU (on a GPU use kernel_backend='triton')")
    return CompiledForCPU(model, freezing=freezing, dynamic=dynamic)
