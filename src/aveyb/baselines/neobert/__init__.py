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
        AutoModel,
        AutoModelForMaskedLM,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    from aveyb.model import register_with_auto

    register_with_auto(NeoBERTConfig, {
        AutoModel: NeoBERTModel,
        AutoModelForMaskedLM: NeoBERTForMaskedLM,
        AutoModelForSequenceClassification: NeoBERTForSequenceClassification,
        AutoModelForTokenClassification: NeoBERTForTokenClassification,
        AutoModelForQuestionAnswering: NeoBERTForQuestionAnswering,
    })
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
