"""Autotuning choices, dot precision and argument helpers shared by the Triton kernels."""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

try:  # Triton >= 3.3: grid dependency control for programmatic dependent launch
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
except ImportError:  # pragma: no cover - older Triton: PDL stays off (pdl_launch), these never run
    @triton.jit
    def gdc_wait():
        pass

    @triton.jit
    def gdc_launch_dependents():
        pass


@triton.jit
def pdl_prologue(PDL: tl.constexpr):
    """First statement of a PDL-launchable kernel: wait until the previous kernel's writes are
    visible (it must, before touching any memory), then let the next kernel start launching."""
    if PDL:
        gdc_wait()
        gdc_launch_dependents()


def tunable(configs: list) -> list:
    """Autotuning candidates, or only the smallest tiles under TRITON_INTERPRET=1 (the CPU
    interpreter cannot time) or AVEYB_AUTOTUNE=0 (read at import; the parity tests use it to keep
    compilation short). Without autotuning nothing prunes a config that exceeds shared memory
    (S=256 in fp32 did with 64-row tiles), so the fallback is the one with the smallest footprint
    (boolean switches such as FLAT do not count)."""
    if os.environ.get("TRITON_INTERPRET") == "1" or os.environ.get("AVEYB_AUTOTUNE") == "0":
        return [min(configs, key=lambda c: math.prod(v for v in c.kwargs.values() if not isinstance(v, bool))
                   * max(c.num_stages, 1))]
    return configs


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs: 3xTF32 (about fp32 accuracy, so selections match the fp32 reference); bf16/fp16
    inputs use the tensor cores' native path and the flag is ignored."""
    return "tf32x3" if dtype == torch.float32 else "tf32"


def mask_arg(mask: torch.Tensor | None, placeholder: torch.Tensor) -> torch.Tensor:
    """A bool mask as the uint8 buffer the kernels read, or ``placeholder`` (any tensor: the
    kernel's HAS_MASK=False branch never reads it) when there is no mask."""
    return mask.contiguous().view(torch.uint8) if mask is not None else placeholder


_PROPERTIES: dict = {}


def device_properties(device: torch.device):
    """The device's CUDA properties, cached: the torch query is Python-heavy and every layer needs
    the SM count and the compute capability (``python -m aveyb.bench.profile --host``)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _PROPERTIES:
        _PROPERTIES[index] = torch.cuda.get_device_properties(index)
    return _PROPERTIES[index]


_PDL = {"0": False, "1": True}


def pdl_launch(device: torch.device) -> dict:
    """Keyword arguments for a layer kernel's launch under programmatic dependent launch
    (``AVEYB_PDL=1``, Hopper or newer): the kernel is launched while its predecessor drains and
    waits (``griddepcontrol.wait``) before touching memory, which hides the gap between the ~100
    kernels of a forward. Off (``0``, the default) the kernels launch as usual."""
    choice = os.environ.get("AVEYB_PDL", "0")
    if choice not in _PDL:
        raise ValueError(f"AVEYB_PDL={choice!r}: expected one of {', '.join(_PDL)}")
    if not _PDL[choice] or device.type != "cuda" or device_properties(device).major < 9:
        return {"PDL": False}
    return {"PDL": True, "launch_pdl": True}
