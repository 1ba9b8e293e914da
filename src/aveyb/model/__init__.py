"""Avey-B model: configuration, ranker, layers, heads, and their Auto-class registration."""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_aveyb import AveyBConfig
from .modeling_aveyb import (
    AveyBForMaskedLM,
    AveyBForQuestionAnswering,
    AveyBForSequenceClassification,
    AveyBForTokenClassification,
    AveyBModel,
    AveyBPreTrainedModel,
    mean_pool,
)

AUTO_CLASSES = {
    AutoModel: AveyBModel,
    AutoModelForMaskedLM: AveyBForMaskedLM,
    AutoModelForSequenceClassification: AveyBForSequenceClassification,
    AutoModelForTokenClassification: AveyBForTokenClassification,
    AutoModelForQuestionAnswering: AveyBForQuestionAnswering,
}


def register_auto_classes() -> None:
    """Make AutoConfig/AutoModel* resolve model_type "aveyb", and make ``save_pretrained`` ship
    the modeling code so checkpoints also load with ``trust_remote_code=True`` without aveyb."""
    AutoConfig.register(AveyBConfig.model_type, AveyBConfig, exist_ok=True)
    AveyBConfig.register_for_auto_class()
    for auto_class, model_class in AUTO_CLASSES.items():
        auto_class.register(AveyBConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class.__name__)


register_auto_classes()

__all__ = [
    "AveyBConfig", "AveyBModel", "AveyBPreTrainedModel", "AveyBForMaskedLM",
    "AveyBForSequenceClassification", "AveyBForTokenClassification", "AveyBForQuestionAnswering",
    "mean_pool", "register_auto_classes",
]
