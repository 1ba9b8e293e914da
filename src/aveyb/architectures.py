"""One entry point to build any masked-LM architecture of this package by name.

``aveyb pretrain --arch`` and the benchmarks go through :func:`build_masked_lm`, so every
architecture is trained and measured the same way. The baselines module extends
``ARCHITECTURES``.
"""

from __future__ import annotations

ARCHITECTURES = ("avey-b", "bert", "roberta", "modernbert", "neobert")
SIZE_PRESETS = ("tiny", "mini", "base")


def build_config(arch: str, preset: str, vocab_size: int, **overrides):
    """The transformers config of ``arch`` at size ``preset`` with the given vocabulary."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {list(ARCHITECTURES)}")
    if preset not in SIZE_PRESETS:
        raise ValueError(f"unknown size preset {preset!r}; choose one of {list(SIZE_PRESETS)}")
    if arch == "avey-b":
        from aveyb.config import preset_config

        return preset_config(preset, vocab_size=vocab_size, **overrides)
    from aveyb.baselines import baseline_config  # noqa: PLC0415 (heavy, optional)

    return baseline_config(arch, preset, vocab_size=vocab_size, **overrides)


def build_masked_lm(arch: str, preset: str, vocab_size: int, **overrides):
    """A freshly initialised masked-LM model (``AutoModelForMaskedLM.from_config``)."""
    import aveyb  # noqa: F401  registers the Auto classes
    from transformers import AutoModelForMaskedLM

    return AutoModelForMaskedLM.from_config(build_config(arch, preset, vocab_size, **overrides))
