"""aveyb: Avey-B, an attention-free bidirectional encoder, Hugging Face-native.

Importing the package registers Avey-B (and the NeoBERT baseline) with transformers' Auto classes.
"""

from aveyb.baselines.neobert import register as _register_neobert
from aveyb.config import AveyBConfig, preset_config
from aveyb.model import (
    AveyBForMaskedLM,
    AveyBForQuestionAnswering,
    AveyBForSequenceClassification,
    AveyBForTokenClassification,
    AveyBModel,
    mean_pool,
)

_register_neobert()  # NeoBERT is not in transformers: make AutoModel* resolve it too

__version__ = "0.1.0"
__all__ = [
    "AveyBConfig", "preset_config", "AveyBModel", "AveyBForMaskedLM", "AveyBForSequenceClassification",
    "AveyBForTokenClassification", "AveyBForQuestionAnswering", "mean_pool", "__version__",
]
