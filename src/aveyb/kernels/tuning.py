"""Autotuning choices, dot precision and argument helpers shared by the Triton kernels."""

from __future__ import annotations

import math
import os

import torch


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


def size_bucket(n: int, cap: int = 4096) -> int:
    """The autotuning key's size class for ``n`` programs' worth of work (splits, or batch x splits):
    the next power of two, at most ``cap``. Without it a kernel keeps the config it tuned on the
    first shape it saw: a benchmark sweep that starts at 128 tokens then ran the dynamic mix at
    2,048 with 32-row tiles, 9% slower end to end on an H100."""
    return min(1 << max(n - 1, 0).bit_length(), cap)


def env_choice(var: str, choices, default: str) -> str:
    """The value of environment variable ``var``, which must be one of ``choices``: anything else is a
    ValueError naming the variable and what is allowed."""
    value = os.environ.get(var, default)
    if value not in choices:
        raise ValueError(f"{var}={value!r}: expected one of {', '.join(choices)}")
    return value


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs: 3xTF32 (about fp32 accuracy, so selections match the fp32 reference); bf16/fp16
    inputs use the tensor cores' native path and the flag is ignored."""
    return "tf32x3" if dtype == torch.float32 else "tf32"


def mask_arg(mask: torch.Tensor | None, placeholder: torch.Tensor) -> torch.Tensor:
    """A bool mask as the uint8 buffer the kernels read, or ``placeholder`` (any tensor: the
    kernel's HAS_MASK=False branch never reads it) when there is no mask."""
    return mask.contiguous().view(torch.uint8) if mask is not None else placeholder


_OUT_DTYPE_OK: dict = {}  # torch.mm / torch.bmm -> whether its out_dtype= overload ran here


def product_fp32(op, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``op(a, b)`` (``torch.mm`` or ``torch.bmm``) with an fp32-or-wider result: straight from the
    GEMM's fp32 accumulator where torch offers it (``out_dtype=``, CUDA, 16-bit inputs; remembered
    per op after the first try), else the product upcast."""
    if a.is_cuda and a.dtype in (torch.bfloat16, torch.float16) and _OUT_DTYPE_OK.get(op, True):
        try:
            out = op(a, b, out_dtype=torch.float32)
            _OUT_DTYPE_OK[op] = True
            return out
        except (TypeError, RuntimeError, NotImplementedError):
            _OUT_DTYPE_OK[op] = False
    return op(a, b).to(torch.promote_types(a.dtype, torch.float32))


KERNEL_MODULES = ("aveyb.kernels.gemm", "aveyb.kernels.layers", "aveyb.kernels.backward", "aveyb.kernels.ranker")


def config_label(config) -> str:
    """A Triton config in one short token: its meta-parameters, then w<warps> s<stages>."""
    meta = ",".join(f"{k}={v}" for k, v in config.kwargs.items())
    return f"{meta},w{config.num_warps},s{config.num_stages}"


def key_label(names, key: tuple) -> str:
    """An autotuning key as ``name=value`` pairs; Triton appends the tensor arguments' dtypes, which
    follow as their distinct names (a masked call differs from an unmasked one there)."""
    named = [f"{n}={v}" for n, v in zip(names, key)]
    dtypes = sorted({str(v).removeprefix("torch.") for v in key[len(names):]})
    return " ".join(named + ([",".join(dtypes)] if dtypes else []))


def chosen_configs() -> dict[str, dict[str, str]]:
    """The config each autotuned kernel settled on in this process, per autotuning key (kernels not
    yet launched, or with one candidate, are left out). Modules not imported yet are not imported."""
    import sys

    chosen = {}
    for name in KERNEL_MODULES:
        module = sys.modules.get(name)
        for attr, value in sorted(vars(module).items()) if module else ():
            cache = getattr(value, "cache", None)
            if isinstance(cache, dict) and cache and hasattr(value, "configs"):
                names = list(getattr(value, "keys", ()))
                chosen[attr] = {key_label(names, key): config_label(c) for key, c in sorted(cache.items(), key=str)}
    return chosen
