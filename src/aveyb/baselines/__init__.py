"""The four Transformer baselines of the Avey-B paper, sized to Avey-B's presets.

BERT, RoBERTa and ModernBERT are ``transformers`` configurations (no code of theirs is
copied here); NeoBERT, which transformers does not ship, is implemented in ``neobert/``.
Build any of them, or Avey-B, through :mod:`aveyb.architectures`.
"""

from __future__ import annotations

BASELINES = ("bert", "roberta", "modernbert", "neobert")


def baseline_config(arch: str, preset: str, vocab_size: int, **overrides):
    """The transformers config of baseline ``arch`` at Avey-B's size ``preset``.

    ``overrides`` replace any field (e.g. ``pad_token_id`` from the tokenizer,
    ``max_position_embeddings``, ``num_labels``).
    """
    if arch == "bert":
        from aveyb.baselines.bert import bert_config

        return bert_config(preset, vocab_size, **overrides)
    if arch == "roberta":
        from aveyb.baselines.roberta import roberta_config

        return roberta_config(preset, vocab_size, **overrides)
    if arch == "modernbert":
        from aveyb.baselines.modernbert import modernbert_config

        return modernbert_config(preset, vocab_size, **overrides)
    if arch == "neobert":
        from aveyb.baselines.neobert.presets import neobert_config

        return neobert_config(preset, vocab_size, **overrides)
    raise ValueError(f"unknown baseline {arch!r}; choose one of {list(BASELINES)}")


def load_baseline(name_or_path: str, head: str = "masked_lm", **kwargs):
    """A published or saved checkpoint by Hub id or local path (see :mod:`aveyb.baselines.loading`)."""
    from aveyb.baselines.loading import load_baseline as _load

    return _load(name_or_path, head=head, **kwargs)


__all__ = ["BASELINES", "baseline_config", "load_baseline"]
