"""One entry point to build any architecture of this package by name.

``aveyb pretrain --arch``, the fine-tuning harness and the benchmarks go through
:func:`build_masked_lm` / :func:`build_model`, so every architecture is trained and measured
the same way. Sizes: ``tiny``, ``mini``, ``base`` are Avey-B's presets; each baseline's preset
of the same name has Avey-B's width and context and a depth chosen to match its
non-embedding parameter count (see ``docs/baselines.md``).
"""

from __future__ import annotations

ARCHITECTURES = ("avey-b", "bert", "roberta", "modernbert", "neobert")
SIZE_PRESETS = ("tiny", "micro", "mini", "base")  # Avey-B's presets (aveyb.config.PRESETS), kept import-free
HEADS = ("base", "masked_lm", "sequence_classification", "token_classification", "question_answering")

_AUTO_CLASSES = {
    "base": "AutoModel",
    "masked_lm": "AutoModelForMaskedLM",
    "sequence_classification": "AutoModelForSequenceClassification",
    "token_classification": "AutoModelForTokenClassification",
    "question_answering": "AutoModelForQuestionAnswering",
}


def register_all() -> None:
    """Make the Auto classes know Avey-B and NeoBERT (idempotent)."""
    from aveyb.model.auto import register_auto_classes

    register_auto_classes()


def auto_class(head: str):
    """The transformers Auto class of a head name (``masked_lm``, ``sequence_classification``, …)."""
    if head not in _AUTO_CLASSES:
        raise ValueError(f"unknown head {head!r}; choose one of {list(HEADS)}")
    import transformers

    register_all()
    return getattr(transformers, _AUTO_CLASSES[head])


def build_config(arch: str, preset: str, vocab_size: int, **overrides):
    """The transformers config of ``arch`` at size ``preset`` with the given vocabulary."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {list(ARCHITECTURES)}")
    if preset not in SIZE_PRESETS:
        raise ValueError(f"unknown size preset {preset!r}; choose one of {list(SIZE_PRESETS)}")
    if arch == "avey-b":
        from aveyb.config import preset_config

        return preset_config(preset, vocab_size=vocab_size, **overrides)
    from aveyb.baselines import baseline_config

    return baseline_config(arch, preset, vocab_size=vocab_size, **overrides)


def build_model(arch: str, preset: str, vocab_size: int, head: str = "masked_lm", **overrides):
    """A freshly initialised model of ``arch`` with ``head`` (``AutoModelFor….from_config``).

    Config fields go in ``overrides`` (e.g. ``num_labels=3``, ``pad_token_id=…``).
    """
    auto = auto_class(head)
    return auto.from_config(build_config(arch, preset, vocab_size, **overrides))


def build_masked_lm(arch: str, preset: str, vocab_size: int, **overrides):
    """A freshly initialised masked-LM model (``AutoModelForMaskedLM.from_config``)."""
    return build_model(arch, preset, vocab_size, head="masked_lm", **overrides)
