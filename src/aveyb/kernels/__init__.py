"""Fused Triton kernels for Avey-B: the ranker and the contextualization layers.

The plain PyTorch functions of :mod:`aveyb.model` are the reference and the CPU default. The model's
modules call a backend's ops with their own parameters; :class:`TritonBackend` is the fused one
(``kernel_backend`` "auto" or "triton", chosen once when the model is built or loaded), and each of
its ops returns what the reference op returns:

* ``layer`` -- matches :func:`aveyb.model.layers.layer_forward`; with autograd on, through the
  training path (``layer.LayerFunction``, or the compiled reference, per ``KernelOptions.train_layer``);
* ``rank`` -- matches :func:`aveyb.model.ranker.rank_and_compress`;
* ``cross_entropy`` -- the masked-LM loss, matches ``F.cross_entropy(logits.float(), labels,
  ignore_index=-100)`` without an fp32 copy of the logits.

:class:`KernelOptions` holds the kernels' settings (the model's ``kernel_options``); :func:`supports`
says whether the kernels cover a configuration (else "auto" resolves to the reference).

One module per operation, each kernel beside a docstring naming the reference it must match, its
forward and backward together: ``ranker``, ``rms_norm``, ``enricher`` (with ``enricher_gluon``),
``mix``, ``fuser``, ``loss``; ``layer`` composes the layer from them; ``backend`` holds the backend;
``graphs`` replays the fused forward as CUDA graphs (``GraphedEncoder``). ``_triton_utils`` holds what
several operations share, ``tuning`` the autotuning, ``options`` the settings. ``docs/kernels.md``
describes the design and the measured speed.

Triton is imported lazily, on the first fused call, so that ``import aveyb.kernels`` works on
machines without Triton (CI); there :func:`supports` is False.
"""
from __future__ import annotations

import importlib.util

from aveyb.kernels.backend import TritonBackend
from aveyb.kernels.options import KernelOptions

__all__ = ["KernelOptions", "TritonBackend", "available", "cross_entropy", "rank_and_compress", "supports",
           "unsupported_reason"]

# Largest split size the one-tile-per-split kernels hold in registers (an S x S tile row block).
MAX_SPLIT_SIZE = 512
SUPPORTED_ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu")


def available() -> bool:
    """True when Triton can be imported (it is never imported here)."""
    return importlib.util.find_spec("triton") is not None


def unsupported_reason(config, device=None) -> str | None:
    """Why the fused path does not cover ``config`` (on ``device``, when given); None when it does."""
    device_type = getattr(device, "type", str(device)) if device is not None else None
    if device_type is not None and device_type != "cuda":
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


def supports(config, device=None) -> bool:
    """True when the fused ops cover ``config`` (on ``device``, when given)."""
    return unsupported_reason(config, device) is None


def rank_and_compress(x, mask, down_proj, config, options: KernelOptions | None = None):
    """Fused ranker; same contract as :func:`aveyb.model.ranker.rank_and_compress`."""
    from aveyb.kernels import ranker

    return ranker.rank_and_compress(x, mask, down_proj, config, options or KernelOptions())


def cross_entropy(logits, labels):
    """Mean cross-entropy of (rows, V) CUDA logits over labels != -100 (checked to be in [0, V))."""
    from aveyb.kernels import loss

    return loss.cross_entropy(logits, labels)
