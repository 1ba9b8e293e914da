"""NeoBERT: configuration, model with four heads, converter from the published checkpoint.

``register()`` makes ``AutoConfig`` / ``AutoModel*`` resolve ``model_type="neobert"`` to these
classes; it is idempotent and cheap.
"""

from aveyb.baselines.neobert.configuration_neobert import NeoBERTConfig
from aveyb.baselines.neobert.modeling_neobert import (
    NeoBERTForMaskedLM,
    NeoBERTForQuestionAnswering,
    NeoBERTForSequenceClassification,
    NeoBERTForTokenClassification,
    NeoBERTModel,
    NeoBERTPreTrainedModel,
)

_REGISTERED = False


def register() -> None:
    """Register NeoBERT with the transformers Auto classes (safe to call many times)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForMaskedLM,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    AutoConfig.register(NeoBERTConfig.model_type, NeoBERTConfig, exist_ok=True)
    for auto, model in (
        (AutoModel, NeoBERTModel),
        (AutoModelForMaskedLM, NeoBERTForMaskedLM),
        (AutoModelForSequenceClassification, NeoBERTForSequenceClassification),
        (AutoModelForTokenClassification, NeoBERTForTokenClassification),
        (AutoModelForQuestionAnswering, NeoBERTForQuestionAnswering),
    ):
        auto.register(NeoBERTConfig, model, exist_ok=True)
    _REGISTERED = True


__all__ = [
    "NeoBERTConfig",
    "NeoBERTForMaskedLM",
    "NeoBERTForQuestionAnswering",
    "NeoBERTForSequenceClassification",
    "NeoBERTForTokenClassification",
    "NeoBERTModel",
    "NeoBERTPreTrainedModel",
    "register",
]
