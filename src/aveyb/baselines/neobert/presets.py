"""NeoBERT sized to Avey-B's presets.

NeoBERT is deep and narrow (28 layers × 768 at base). Each preset keeps Avey-B's width and
28/30 of its depth (base 28, mini 15, micro 7, tiny 4), and sets ``intermediate_size`` so that the
SwiGLU width (``ffn_size``) brings the non-embedding parameters to Avey-B's: 920 at base
(published NeoBERT: 2048), 488 at mini, 64 at tiny. ``NeoBERTConfig()`` with no arguments
is the published model.
"""

from __future__ import annotations

from aveyb.baselines._common import context_length, merged, width

LAYERS = {"tiny": 4, "micro": 7, "mini": 15, "base": 28}
# Nominal sizes whose 2/3 (rounded up to 8) is the SwiGLU width: 96 -> 64, 204 -> 136, 732 -> 488,
# 1380 -> 920.
INTERMEDIATE = {"tiny": 96, "micro": 204, "mini": 732, "base": 1380}


def presets() -> dict:
    return {
        name: dict(
            hidden_size=width(name), num_hidden_layers=layers, num_attention_heads=max(width(name) // 64, 2),
            intermediate_size=INTERMEDIATE[name], max_position_embeddings=context_length(name), pad_token_id=0,
        )
        for name, layers in LAYERS.items()
    }


def neobert_config(preset: str, vocab_size: int, **overrides):
    from aveyb.baselines.neobert import NeoBERTConfig, register

    register()
    return NeoBERTConfig(**merged(presets(), preset, vocab_size, overrides))
