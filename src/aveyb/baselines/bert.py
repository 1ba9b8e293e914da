"""BERT (Devlin et al., 2019) sized to Avey-B's presets: a ``transformers.BertConfig``.

Published block shape (post-LayerNorm, GELU MLP of 4·d, 64-dim heads); only the depth
changes so that the non-embedding parameters match Avey-B's. Dropout is 0, as in Avey-B,
ModernBERT and NeoBERT pretraining; pass ``hidden_dropout_prob=0.1`` etc. for the original.
"""

from __future__ import annotations

from aveyb.baselines._common import context_length, merged, width


def _shape(preset: str, layers: int) -> dict:
    d = width(preset)
    return dict(
        hidden_size=d, num_hidden_layers=layers, num_attention_heads=max(d // 64, 2), intermediate_size=4 * d,
        max_position_embeddings=context_length(preset), type_vocab_size=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0,
    )


# Layers per preset: tiny 2 (d=64), micro 4 (d=128), mini 10 (d=384), base 18 (d=768; published
# BERT-base has 12).
LAYERS = {"tiny": 2, "micro": 4, "mini": 10, "base": 18}


def presets() -> dict:
    return {name: _shape(name, layers) for name, layers in LAYERS.items()}


def bert_config(preset: str, vocab_size: int, **overrides):
    from transformers import BertConfig

    return BertConfig(**merged(presets(), preset, vocab_size, overrides))
