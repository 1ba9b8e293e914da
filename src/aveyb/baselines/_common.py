"""What the baseline configurations share: Avey-B's context per preset and override merging."""

from __future__ import annotations

from aveyb.config import PRESETS as AVEYB_PRESETS


def context_length(preset: str) -> int:
    """The training context of Avey-B's preset; every baseline uses the same one."""
    if preset not in AVEYB_PRESETS:
        raise ValueError(f"unknown size preset {preset!r}; choose one of {list(AVEYB_PRESETS)}")
    return AVEYB_PRESETS[preset]["max_position_embeddings"]


def width(preset: str) -> int:
    """Avey-B's width d at this preset; every baseline uses the same one."""
    return AVEYB_PRESETS[preset]["hidden_size"]


def merged(table: dict, preset: str, vocab_size: int, overrides: dict) -> dict:
    if preset not in table:
        raise ValueError(f"unknown size preset {preset!r}; choose one of {list(table)}")
    return {**table[preset], "vocab_size": vocab_size, **overrides}
