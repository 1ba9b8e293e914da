"""The four Transformer baselines of the Avey-B paper, sized to Avey-B's presets.

BERT, RoBERTa and ModernBERT are ``transformers`` configurations (no code of theirs is
copied here); NeoBERT, which transformers does not ship, is implemented in ``neobert/``.
Importing this package registers the four with :mod:`aveyb.architectures`, through which any
of them, or Avey-B, is built, counted and loaded.
"""

from __future__ import annotations

import importlib

from aveyb.architectures import register_architecture

BASELINES = ("bert", "roberta", "modernbert", "neobert")


def _config_builder(module: str, function: str):
    """``module.function``, imported when first called: the presets read Avey-B's (which imports
    transformers), and ``import aveyb.baselines`` must stay cheap for the command line."""

    def build_config(preset: str, vocab_size: int, **overrides):
        return getattr(importlib.import_module(module), function)(preset, vocab_size, **overrides)

    build_config.__qualname__ = f"{module}.{function}"
    return build_config


register_architecture("bert", _config_builder("aveyb.baselines.bert", "bert_config"),
                      "BERT (Devlin et al., 2019): post-LN, GELU MLP")
register_architecture("roberta", _config_builder("aveyb.baselines.roberta", "roberta_config"),
                      "RoBERTa (Liu et al., 2019): BERT's block, no token types")
register_architecture("modernbert", _config_builder("aveyb.baselines.modernbert", "modernbert_config"),
                      "ModernBERT (Warner et al., 2024): pre-LN, GeGLU, RoPE, alternating local/global attention")
register_architecture("neobert", _config_builder("aveyb.baselines.neobert.presets", "neobert_config"),
                      "NeoBERT (Le Breton et al., 2025): pre-RMSNorm, SwiGLU, RoPE")

__all__ = ["BASELINES"]
