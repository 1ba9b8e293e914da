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


def register_with_auto(config_class, auto_classes: dict, remote_code: bool = False) -> None:
    """Make AutoConfig and each AutoModel* of ``auto_classes`` ({Auto class: model class}) resolve
    ``config_class.model_type``; with ``remote_code``, ``save_pretrained`` also ships the modeling
    code so checkpoints load with ``trust_remote_code=True`` where this package is absent."""
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    if remote_code:
        config_class.register_for_auto_class()
    for auto_class, model_class in auto_classes.items():
        auto_class.register(config_class, model_class, exist_ok=True)
        if remote_code:
            model_class.register_for_auto_class(auto_class.__name__)


def register_auto_classes() -> None:
    """Register Avey-B with the Auto classes, remote code included (runs on import)."""
    register_with_auto(AveyBConfig, AUTO_CLASSES, remote_code=True)


register_auto_classes()

__all__ = [
    "AveyBConfig", "AveyBModel", "AveyBPreTrainedModel", "AveyBForMaskedLM",
    "AveyBForSequenceClassification", "AveyBForTokenClassification", "AveyBForQuestionAnswering",
    "mean_pool", "register_auto_classes", "register_with_auto",
]
