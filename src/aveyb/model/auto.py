"""Registration of Avey-B (and the NeoBERT baseline) with transformers' Auto classes.

Two steps, so that ``import aveyb`` stays cheap: the configs are registered with ``AutoConfig``
as soon as transformers' Auto machinery is loaded (:mod:`aveyb._autoregister`), and the model
classes when the first config is built (every ``AutoModel*`` path builds the config before it
looks a class up), because importing them imports ``transformers.PreTrainedModel``, which costs
seconds.
"""

from __future__ import annotations

_CONFIGS_REGISTERED = False
_MODELS_REGISTERED = False


def register_with_auto(config_class, auto_classes: dict, remote_code: bool = False) -> None:
    """Make AutoConfig and each AutoModel* of ``auto_classes`` ({Auto class: model class}) resolve
    ``config_class.model_type``; with ``remote_code``, ``save_pretrained`` also ships the modeling
    code so checkpoints load with ``trust_remote_code=True`` where this package is absent."""
    from transformers import AutoConfig

    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    if remote_code:
        config_class.register_for_auto_class()
    for auto_class, model_class in auto_classes.items():
        auto_class.register(config_class, model_class, exist_ok=True)
        if remote_code:
            model_class.register_for_auto_class(auto_class.__name__)


def register_configs() -> None:
    """``AutoConfig`` resolves ``aveyb`` and ``neobert`` (cheap once transformers' configs are loaded)."""
    global _CONFIGS_REGISTERED
    if _CONFIGS_REGISTERED:
        return
    from aveyb.baselines.neobert.configuration_neobert import NeoBERTConfig
    from aveyb.model.configuration_aveyb import AveyBConfig

    register_with_auto(AveyBConfig, {}, remote_code=True)
    register_with_auto(NeoBERTConfig, {})
    _CONFIGS_REGISTERED = True


def avey_auto_classes() -> dict:
    """{Auto class: Avey-B class} for the base model and every head."""
    from transformers import (
        AutoModel,
        AutoModelForMaskedLM,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    from aveyb.model import modeling_aveyb as m

    return {
        AutoModel: m.AveyBModel,
        AutoModelForMaskedLM: m.AveyBForMaskedLM,
        AutoModelForSequenceClassification: m.AveyBForSequenceClassification,
        AutoModelForTokenClassification: m.AveyBForTokenClassification,
        AutoModelForQuestionAnswering: m.AveyBForQuestionAnswering,
    }


def register_auto_classes() -> None:
    """Register the configs and every model class of Avey-B and NeoBERT (idempotent)."""
    global _MODELS_REGISTERED
    if _MODELS_REGISTERED:
        return
    _MODELS_REGISTERED = True  # set first: a config built while the classes import must not recurse
    try:
        register_configs()
        from aveyb.baselines.neobert import register as register_neobert
        from aveyb.model.configuration_aveyb import AveyBConfig

        register_with_auto(AveyBConfig, avey_auto_classes(), remote_code=True)
        register_neobert()
    except BaseException:
        _MODELS_REGISTERED = False
        raise
