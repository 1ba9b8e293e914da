"""ModernBERT (Warner et al., 2024) sized to Avey-B's presets: a ``transformers.ModernBertConfig``.

Published block shape: pre-LayerNorm without biases, GeGLU MLP of 1.5·d, rotary positions,
a global-attention layer every third layer and sliding-window (``local_attention`` = 128
tokens) layers in between. Only the depth changes to match Avey-B's non-embedding count
(published ModernBERT-base: 22 layers). The tiny preset shrinks the window to 32 so that the
CI tests cross it. Special-token ids default to None (pad 0) because the vocabulary is ours,
not ModernBERT's; pass them as overrides from the tokenizer.
"""

from __future__ import annotations

from aveyb.baselines._common import context_length, merged, width

# Layers per preset: tiny 3 (d=64), micro 6 (d=128), mini 14 (d=384), base 25 (d=768).
LAYERS = {"tiny": 3, "micro": 6, "mini": 14, "base": 25}
# micro trains on 256 tokens: a 64-token window keeps local and global layers distinct.
LOCAL_ATTENTION = {"tiny": 32, "micro": 64, "mini": 128, "base": 128}


def presets() -> dict:
    table = {}
    for name, layers in LAYERS.items():
        d = width(name)
        table[name] = dict(
            hidden_size=d, num_hidden_layers=layers, num_attention_heads=max(d // 64, 2),
            intermediate_size=3 * d // 2, max_position_embeddings=context_length(name),
            local_attention=LOCAL_ATTENTION[name], global_attn_every_n_layers=3,
            pad_token_id=0, bos_token_id=None, eos_token_id=None, cls_token_id=None, sep_token_id=None,
        )
    return table


def modernbert_config(preset: str, vocab_size: int, **overrides):
    from transformers import ModernBertConfig

    return ModernBertConfig(**merged(presets(), preset, vocab_size, overrides))
