"""Autotuning: the candidates each kernel tunes over, the size classes its key uses, and what the
autotuners chose (recorded by ``aveyb bench``). Imports neither torch nor Triton at module level."""

from __future__ import annotations

import math
import sys

# The modules whose autotuned kernels :func:`chosen_configs` reports.
KERNEL_MODULES = ("aveyb.kernels.enricher", "aveyb.kernels.fuser", "aveyb.kernels.mix", "aveyb.kernels.rms_norm",
                  "aveyb.kernels.ranker")


def smallest_config(configs: list):
    """The candidate with the smallest footprint: the product of its numeric meta-parameters times its
    pipeline stages (boolean switches such as FLAT do not count)."""
    return min(configs, key=lambda c: math.prod(v for v in c.kwargs.values() if not isinstance(v, bool))
               * max(c.num_stages, 1))


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (Triton's own setting, TRITON_INTERPRET)."""
    try:
        import triton
    except ImportError:
        return False
    return bool(triton.knobs.runtime.interpret)


def tunable(configs: list) -> list:
    """Autotuning candidates, or only the smallest tiles in Triton's interpreter (it cannot time).
    Without autotuning nothing prunes a config that exceeds shared memory (S=256 in fp32 did with
    64-row tiles), so the fallback is the one with the smallest footprint."""
    if interpreting():
        return [smallest_config(configs)]
    return configs


_FULL_CONFIGS: dict = {}  # autotuner -> its candidates, while set_autotune(False) pins one
_AUTOTUNE = [True]


def set_autotune(enabled: bool) -> None:
    """``KernelOptions.autotune``: False pins every autotuned kernel to its smallest config, True
    gives the candidates back. Triton's autotuners are module-level objects, so this is process-wide;
    it acts only when the setting changes, so a call per launch costs a comparison and never undoes
    a pin made by other means (the tests pin configs themselves)."""
    if enabled == _AUTOTUNE[0]:
        return
    import importlib

    for name in KERNEL_MODULES:
        importlib.import_module(name)
    for kernel in autotuned_kernels().values():
        if enabled:
            if kernel in _FULL_CONFIGS:
                kernel.configs = _FULL_CONFIGS.pop(kernel)
        else:
            _FULL_CONFIGS[kernel] = kernel.configs
            kernel.configs = [smallest_config(kernel.configs)]
        kernel.cache.clear()
    _AUTOTUNE[0] = enabled


def size_bucket(n: int, cap: int = 4096) -> int:
    """The autotuning key's size class for ``n`` programs' worth of work (splits, or batch x splits):
    the next power of two, at most ``cap``. Without it a kernel keeps the config it tuned on the
    first shape it saw: a benchmark sweep that starts at 128 tokens then ran the dynamic mix at
    2,048 with 32-row tiles, 9% slower end to end on an H100."""
    return min(1 << max(n - 1, 0).bit_length(), cap)


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


def autotuned_kernels() -> dict:
    """Name -> autotuner of every autotuned kernel in the modules of KERNEL_MODULES imported so far
    (modules not imported yet are not imported)."""
    found = {}
    for name in KERNEL_MODULES:
        module = sys.modules.get(name)
        for attr, value in sorted(vars(module).items()) if module else ():
            if isinstance(getattr(value, "cache", None), dict) and hasattr(value, "configs"):
                found[attr] = value
    return found


def chosen_configs() -> dict[str, dict[str, str]]:
    """The config each autotuned kernel settled on in this process, per autotuning key (kernels not
    yet launched, or with one candidate, are left out)."""
    chosen = {}
    for attr, kernel in autotuned_kernels().items():
        if kernel.cache:
            names = list(getattr(kernel, "keys", ()))
            chosen[attr] = {key_label(names, key): config_label(c) for key, c in sorted(kernel.cache.items(), key=str)}
    return chosen
