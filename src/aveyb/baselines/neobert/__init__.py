"""NeoBERT: configuration, model with four heads, converter from the published checkpoint.

``register()`` makes ``AutoConfig`` / ``AutoModel*`` resolve ``model_type="neobert"`` to these
classes; it is idempotent. Names load on first use (the model classes import
``transformers.PreTrainedModel``, which costs seconds).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "NeoBERTConfig": "configuration_neobert",
    "NeoBERTModel": "modeling_neobert",
    "NeoBERTPreTrainedModel": "modeling_neobert",
    "NeoBERTForMaskedLM": "modeling_neobert",
    "NeoBERTForSequenceClassification": "modeling_neobert",
    "NeoBERTForTokenClassification": "modeling_neobert",
    "NeoBERTForQuestionAnswering": "modeling_neobert",
}

_REGISTERED = False


def register() -> None:
    """Register NeoBERT with the transformers Auto classes (safe to call many times)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True  # set first: the imports below may build a config, which calls this again
    try:
        from transformers import (
            AutoModel,
            AutoModelForMaskedLM,
            AutoModelForQuestionAnswering,
            AutoModelForSequenceClassification,
            AutoModelForTokenClassification,
        )

        from aveyb.baselines.neobert import modeling_neobert as m
        from aveyb.model.auto import register_with_auto

        register_with_auto(m.NeoBERTConfig, {
            AutoModel: m.NeoBERTModel,
            AutoModelForMaskedLM: m.NeoBERTForMaskedLM,
            AutoModelForSequenceClassification: m.NeoBERTForSequenceClassification,
            AutoModelForTokenClassification: m.NeoBERTForTokenClassification,
            AutoModelForQuestionAnswering: m.NeoBERTForQuestionAnswering,
        })
    except BaseException:
        _REGISTERED = False
        raise


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


__all__ = [*_LAZY, "register"]
