"""Parameter counts of built models, split into embedding and non-embedding.

*Embedding* parameters are those of every ``nn.Embedding`` module (token, learned absolute
position and token-type tables) plus the model's output embedding (``get_output_embeddings``:
the vocabulary projection, counted once when tied, and its bias). Everything else is
*non-embedding*, including Avey-B's position-indexed mixing matrices P and D (they mix
tokens like attention weights; they are not looked up) and the MLM heads' transform layers.
Shared tensors are counted once.
"""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``{"total", "embedding", "non_embedding"}`` of a built model."""
    unique = {id(p): p for p in model.parameters()}
    embedding_ids = set()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            embedding_ids.update(id(p) for p in module.parameters())
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(output, nn.Module):
        embedding_ids.update(id(p) for p in output.parameters())
    total = sum(p.numel() for p in unique.values())
    embedding = sum(unique[i].numel() for i in embedding_ids if i in unique)
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def build_on_meta(arch: str, preset: str, vocab_size: int, **overrides) -> nn.Module:
    """The masked-LM model of ``arch`` built on the meta device (no memory, exact shapes)."""
    from aveyb.architectures import build_masked_lm

    try:
        with torch.device("meta"):
            return build_masked_lm(arch, preset, vocab_size, **overrides)
    except (NotImplementedError, RuntimeError):  # a model whose __init__ computes on tensors
        return build_masked_lm(arch, preset, vocab_size, **overrides)


def aveyb_counts_from_formula(preset: str, vocab_size: int) -> dict[str, int]:
    """Avey-B's counts from SPEC.md (a cross-check of the built model in the tests).

    Per layer: enricher d·4d+4d, fuser 3d·d+d, RMSNorm d, alpha 1, plus P (S×S) in static
    layers; once: D (S×(k+1)S) and the tied embedding V×d.
    """
    from aveyb.config import preset_config

    config = preset_config(preset, vocab_size=vocab_size)
    d, s = config.hidden_size, config.mixer_size
    layers = sum(
        d * 4 * d + 4 * d + 3 * d * d + d + d + 1 + (s * s if kind in ("static", "coupled") else 0)
        for kind in config.layer_kinds()
    )
    non_embedding = layers + (config.split_size * config.window_size if config.compression else 0)
    embedding = vocab_size * d
    return {"total": embedding + non_embedding, "embedding": embedding, "non_embedding": non_embedding}


def parameter_table(preset: str, vocab_size: int = 50368) -> dict[str, dict[str, int]]:
    """Counts of all five architectures at ``preset``, from the models themselves."""
    from aveyb.architectures import architecture_names

    return {arch: count_parameters(build_on_meta(arch, preset, vocab_size)) for arch in architecture_names()}


def format_table(table: dict[str, dict[str, int]], reference: str = "avey-b") -> str:
    """A plain-text table with each architecture's non-embedding count relative to ``reference``."""
    lines = [f"{'architecture':<12} {'total':>14} {'embedding':>14} {'non-embedding':>14} {'vs ' + reference:>10}"]
    ref = table.get(reference, {}).get("non_embedding")
    for arch, counts in table.items():
        ratio = f"{100 * (counts['non_embedding'] / ref - 1):+.1f}%" if ref else "-"
        lines.append(
            f"{arch:<12} {counts['total']:>14,} {counts['embedding']:>14,} {counts['non_embedding']:>14,} {ratio:>10}"
        )
    return "\n".join(lines)
