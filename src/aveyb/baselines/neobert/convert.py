"""Convert the published NeoBERT checkpoint (``chandar-lab/NeoBERT``, remote code) to our names.

The published model stores (prefix ``model.`` when saved from its LM-head class):

    encoder.weight                                   -> neobert.embed.weight
    transformer_encoder.{i}.qkv.weight               -> neobert.layers.{i}.attn.qkv.weight
    transformer_encoder.{i}.wo.weight                -> neobert.layers.{i}.attn.out.weight
    transformer_encoder.{i}.ffn.w12.weight           -> neobert.layers.{i}.ffn.gate_up.weight
    transformer_encoder.{i}.ffn.w3.weight            -> neobert.layers.{i}.ffn.down.weight
    transformer_encoder.{i}.attention_norm.weight    -> neobert.layers.{i}.attn_norm.weight
    transformer_encoder.{i}.ffn_norm.weight          -> neobert.layers.{i}.ffn_norm.weight
    layer_norm.weight                                -> neobert.final_norm.weight
    decoder.{weight,bias}                            -> decoder.{weight,bias}        (LM head)
    dense.*, classifier.*                            -> dense.*, classifier.*        (classification head)

Tensor layouts are identical (per-head fused qkv, fused [gate | up], adjacent-pair rotary),
so conversion is a renaming; no tensor is permuted.
"""

from __future__ import annotations

import re

_LAYER_RENAMES = {
    "qkv": "attn.qkv",
    "wo": "attn.out",
    "ffn.w12": "ffn.gate_up",
    "ffn.w3": "ffn.down",
    "attention_norm": "attn_norm",
    "ffn_norm": "ffn_norm",
}
_LAYER_KEY = re.compile(r"^transformer_encoder\.(\d+)\.(.+)\.(weight|bias)$")


def is_published_neobert_state_dict(keys) -> bool:
    """True when the names are those of the published remote-code NeoBERT."""
    return any("transformer_encoder." in key for key in keys)


def convert_key(key: str) -> str:
    """Our name for one published parameter name (raises on a name it does not know)."""
    body = key.removeprefix("model.")
    if body == "encoder.weight":
        return "neobert.embed.weight"
    if body == "layer_norm.weight":
        return "neobert.final_norm.weight"
    if match := _LAYER_KEY.match(body):
        index, module, kind = match.groups()
        if module in _LAYER_RENAMES:
            return f"neobert.layers.{index}.{_LAYER_RENAMES[module]}.{kind}"
    if re.match(r"^(decoder|dense|classifier)\.(weight|bias)$", body):
        return body
    raise KeyError(f"unknown parameter name in a published NeoBERT checkpoint: {key!r}")


def convert_published_state_dict(state_dict: dict) -> dict:
    """Rename every tensor of a published NeoBERT state dict to this package's names."""
    return {convert_key(key): value for key, value in state_dict.items()}
