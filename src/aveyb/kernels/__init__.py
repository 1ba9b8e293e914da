"""Fused Triton kernels for Avey-B: the ranker and the contextualization layers.

The plain PyTorch modules in :mod:`aveyb.model` are the reference and the CPU default. On a CUDA
device, with ``config.kernel_backend`` "auto" or "triton", the model calls the functions below
instead; each returns what its reference returns:

* :func:`supports` -- whether these kernels cover ``config`` on ``device`` (else the reference runs);
* :func:`rank_and_compress` -- matches :func:`aveyb.model.ranker.rank_and_compress`;
* :func:`layer_forward` -- matches ``AveyBLayer.forward``; with autograd on, through the training
  path (``layer.LayerFunction``, or the compiled reference, per ``AVEYB_TRAIN_LAYER``);
* :func:`run_layers` -- every layer in turn (yielding each output), passing the row statistics
  one fused layer computes for the next one's RMSNorm;
* :func:`cross_entropy` -- the masked-LM loss, matches ``F.cross_entropy(logits.float(), labels,
  ignore_index=-100)`` without an fp32 copy of the logits.

One module per operation, each kernel beside a docstring naming the reference it must match, its
forward and backward together: ``ranker``, ``rms_norm``, ``enricher`` (with ``enricher_gluon``),
``mix``, ``fuser``, ``loss``; ``layer`` composes the layer from them; ``graphs`` replays the fused
forward as CUDA graphs (``GraphedEncoder``). ``_triton_utils`` holds what several operations share,
``tuning`` the autotuning. ``docs/kernels.md`` describes the design and the measured speed.

Triton is imported lazily, on the first call of the last four, so that ``import aveyb.kernels``
works on machines without Triton (CI); there :func:`supports` is False.
"""
from __future__ import annotations

import importlib.util

__all__ = ["available", "cross_entropy", "layer_forward", "rank_and_compress", "run_layers", "supports",
           "unsupported_reason"]

# Largest split size the one-tile-per-split kernels hold in registers (an S x S tile row block).
MAX_SPLIT_SIZE = 512
SUPPORTED_ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu")


def available() -> bool:
    """True when Triton can be imported (it is never imported here)."""
    return importlib.util.find_spec("triton") is not None


def unsupported_reason(config, device) -> str | None:
    """Why the fused path does not cover ``config`` on ``device``; None when it does."""
    device_type = getattr(device, "type", str(device))
    if device_type != "cuda":
        return f"the kernels run on CUDA only (device {device_type!r})"
    if not available():
        return "triton is not installed"
    if not getattr(config, "compression", True):
        return "compression=False (layers on the whole (k+1)S window) is not fused"
    if config.split_size > MAX_SPLIT_SIZE or config.split_size < 1:
        return f"split_size={config.split_size} is outside 1..{MAX_SPLIT_SIZE}"
    if config.hidden_act not in SUPPORTED_ACTIVATIONS:
        return f"hidden_act={config.hidden_act!r} is not fused"
    if config.hidden_size < 16:
        return "hidden_size < 16 is below the smallest tensor-core tile"
    return None


def supports(config, device) -> bool:
    """True when :func:`rank_and_compress` and :func:`layer_forward` cover ``config`` on ``device``."""
    return unsupported_reason(config, device) is None


def rank_and_compress(x, mask, down_proj, config):
    """Fused ranker; same contract as :func:`aveyb.model.ranker.rank_and_compress`."""
    from aveyb.kernels import ranker

    return ranker.rank_and_compress(x, mask, down_proj, config)


def layer_forward(layer, x, mask):
    """Fused ``AveyBLayer.forward(x, mask)``: (M, S, d), (M, S) bool or None -> (M, S, d)."""
    from aveyb.kernels import layer as fused_layer

    return fused_layer.layer_forward(layer, x, mask)


def cross_entropy(logits, labels):
    """Mean cross-entropy of (rows, V) CUDA logits over labels != -100 (checked to be in [0, V))."""
    from aveyb.kernels import loss

    return loss.cross_entropy(logits, labels)


def run_layers(layers, h, mask):
    """Yield the output of each of ``layers`` applied in turn to ``h`` (M, S, d)."""
    from aveyb.kernels import layer as fused_layer

    return fused_layer.run_layers(layers, h, mask)
