"""Opt-in int8 dynamic quantisation of Avey-B's enricher and fuser (CPU inference).

``quantize_dynamic_int8(model)`` replaces every layer's enricher (d -> 4d) and fuser (3d -> d)
``nn.Linear`` by a dynamically quantised one: int8 weights (symmetric, one scale per output
channel), activations quantised to 8 bits per call with a scale computed from that call's
input (per tensor), int32 accumulation. These two GEMMs are about 90% of the model's work; the
embedding, the ranker, the mixers, RMSNorm and the heads stay in float32.

It changes the numbers, so it is never applied implicitly: the fp32 reference (and the compiled
CPU path, :mod:`aveyb.serving`) compute the model's function, int8 approximates it. Measured cost
on a fine-tuned model and the tolerance the tests hold it to: ``README.md``, "CPU serving".

Padding: real tokens still never *see* padded ones (masks are applied as in fp32), but the
activation scale of a quantised Linear is the max over the whole call's input, padded rows
included, so a row's outputs inside a padded batch differ from its outputs alone by rounding
(within the same tolerance as int8 against fp32), not exactly as in fp32.

Backend: PyTorch's eager dynamic quantisation (``torch.ao.quantization.quantize_dynamic``,
fbgemm / x86 kernels, VNNI where the CPU has it). torch marks ``torch.ao.quantization`` as
deprecated in favour of torchao, which is not a dependency here (nor installed on our bench
machines); the API is still present and working in torch 2.11-2.13, and its warning is
silenced inside this function only. CPU only: quantised modules do not run on CUDA.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn

from aveyb.model.layers import ACT_FNS, LayerWeights, contextualize

QUANTISED = ("enricher", "fuser")
# What the tests hold int8 to: ‖int8 − fp32‖ / ‖fp32‖ of the last hidden state over real tokens
# (tiny preset, random weights, right-padded batches; tests/test_cpu_fast_path.py).
INT8_TOLERANCE = 0.1


class Int8Layer(nn.Module):
    """An Avey-B layer whose enricher and fuser are int8 dynamic Linears: the layer's math (SPEC 3)
    with the two GEMMs as module calls, so the quantised modules run, and the mix through
    :func:`aveyb.model.layers.contextualize`. It holds the original layer's parameters under the
    same names (``norm.weight``, ``alpha``, ``spatial_proj``, ``tau``)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.kind, self.spec = layer.kind, layer.spec
        self.norm, self.enricher, self.fuser, self.alpha = layer.norm, layer.enricher, layer.fuser, layer.alpha
        for name in ("spatial_proj", "tau"):
            if getattr(layer, name, None) is not None:
                setattr(self, name, getattr(layer, name))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        z = ACT_FNS[self.spec.hidden_act](self.enricher(self.norm(x)))
        width = x.shape[-1]
        u, gate, bypass = z[..., :width], z[..., width:2 * width], z[..., 2 * width:]
        # contextualize reads P and τ only; the GEMM weights are the quantised modules'
        mix_weights = LayerWeights(self.norm.weight, None, None, None, None, self.alpha,
                                   getattr(self, "spatial_proj", None), getattr(self, "tau", None))
        mixed = contextualize(u, mask, mix_weights, self.spec)
        return self.fuser(torch.cat([gate * mixed, bypass], dim=-1)) + self.alpha * x


def _encoders(model: nn.Module):
    return [m for m in model.modules() if isinstance(getattr(m, "layers", None), nn.ModuleList)
            and hasattr(m, "ranker")]


def quantize_dynamic_int8(model: nn.Module, inplace: bool = False) -> nn.Module:
    """``model`` (any Avey-B model or head, on the CPU) with int8 dynamic enricher and fuser Linears.

    Returns a copy unless ``inplace``, in eval mode and float32. Raises if the model holds no
    Avey-B layers, or sits on a non-CPU device. Quantise after loading: a quantised model is
    for inference and does not round-trip through ``save_pretrained``.
    """
    devices = {p.device.type for p in model.parameters()}
    if devices != {"cpu"}:
        raise ValueError(f"int8 dynamic quantisation runs on the CPU; the model is on {sorted(devices)}")
    encoders = _encoders(model)
    if not encoders:
        raise ValueError(f"{type(model).__name__} has no Avey-B layers to quantise")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        target = model if inplace else copy.deepcopy(model)
        target = target.float().eval()
        for encoder in _encoders(target):
            encoder.layers = nn.ModuleList(Int8Layer(layer) for layer in encoder.layers)
        names = [name for name, module in target.named_modules()
                 if isinstance(module, nn.Linear) and name.rpartition(".")[2] in QUANTISED
                 and ".layers." in f".{name}"]
        quantize_dynamic(target, {name: per_channel_dynamic_qconfig for name in names},
                         dtype=torch.qint8, inplace=True)
    return target


def is_quantized(model: nn.Module) -> bool:
    """True when some enricher or fuser of ``model`` is a dynamically quantised Linear."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return any(isinstance(m, DynamicLinear) for m in model.modules())
