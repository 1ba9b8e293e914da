"""RoBERTa (Liu et al., 2019) sized to Avey-B's presets: a ``transformers.RobertaConfig``.

Same block shape and depths as our BERT presets (RoBERTa changes the recipe, not the
architecture), one token type, and position ids that start after ``pad_token_id``: the
position table therefore holds ``context + pad_token_id + 1`` rows.
"""

from __future__ import annotations

from aveyb.baselines._common import merged
from aveyb.baselines.bert import presets as bert_presets


def presets(pad_token_id: int = 1) -> dict:
    table = {}
    for name, shape in bert_presets().items():
        context = shape["max_position_embeddings"]
        table[name] = {**shape, "type_vocab_size": 1, "pad_token_id": pad_token_id,
                       "max_position_embeddings": context + pad_token_id + 1}
    return table


def roberta_config(preset: str, vocab_size: int, **overrides):
    from transformers import RobertaConfig

    pad = overrides.get("pad_token_id", 1)
    return RobertaConfig(**merged(presets(pad if pad is not None else 1), preset, vocab_size, overrides))
