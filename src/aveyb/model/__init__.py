"""Avey-B model: configuration, ranker, layers, heads, and their Auto-class registration
(:mod:`aveyb.model.auto`). Names load on first use: the model classes import
``transformers.PreTrainedModel``, which costs seconds."""

from __future__ import annotations

import importlib

_LAZY = {
    "AveyBConfig": "configuration_aveyb",
    "AveyBModel": "modeling_aveyb",
    "AveyBPreTrainedModel": "modeling_aveyb",
    "AveyBForMaskedLM": "modeling_aveyb",
    "AveyBForSequenceClassification": "modeling_aveyb",
    "AveyBForTokenClassification": "modeling_aveyb",
    "AveyBForQuestionAnswering": "modeling_aveyb",
    "mean_pool": "modeling_aveyb",
    "register_auto_classes": "auto",
    "register_with_auto": "auto",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'aveyb.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
