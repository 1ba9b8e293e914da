"""aveyb: Avey-B, an attention-free bidirectional encoder, Hugging Face-native.

Importing the package registers Avey-B (and the NeoBERT baseline) with transformers' Auto
classes, and imports nothing heavy: the names below load on first use, and the registration
waits until transformers' Auto machinery is loaded (``aveyb._autoregister``), so that
``import aveyb`` and ``aveyb --help`` do not pay for torch.
"""

from __future__ import annotations

import importlib

from aveyb import _autoregister

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "AveyBConfig": "aveyb.model.configuration_aveyb",
    "preset_config": "aveyb.model.configuration_aveyb",
    "AveyBModel": "aveyb.model.modeling_aveyb",
    "AveyBForMaskedLM": "aveyb.model.modeling_aveyb",
    "AveyBForSequenceClassification": "aveyb.model.modeling_aveyb",
    "AveyBForTokenClassification": "aveyb.model.modeling_aveyb",
    "AveyBForQuestionAnswering": "aveyb.model.modeling_aveyb",
    "mean_pool": "aveyb.model.modeling_aveyb",
    "register_auto_classes": "aveyb.model.auto",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'aveyb' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later accesses skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


_autoregister.install()
