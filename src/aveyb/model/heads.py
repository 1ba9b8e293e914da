"""Pooling and losses shared by the task heads of Avey-B and NeoBERT (SPEC 4, transformers' conventions).

Kept apart from both models so that neither imports the other, and relative to this package so
that a checkpoint shipping Avey-B's code (``trust_remote_code``) carries it along.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def mean_pool(hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
    """Mean of the hidden states over real tokens (SPEC 4: sequence heads and retrieval)."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def check_labels(labels: Tensor, num_labels: int, field: str = "labels") -> None:
    """Class labels must lie in [0, num_labels) or be -100 (ignored)."""
    if torch.compiler.is_compiling():
        return
    bad = (labels != -100) & ((labels < 0) | (labels >= num_labels))
    if bool(bad.any()):
        raise ValueError(f"{field} must be -100 (ignored) or in [0, {num_labels}); found {labels[bad][:5].tolist()}")


def label_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy over the last axis of ``logits`` (fp32) for labels checked to be in [0, n) or
    -100 (ignored): the loss of the classification and token-classification heads (the masked-LM
    head, whose labels are checked before its sparse gather, uses its backend's ``cross_entropy``)."""
    num_labels = logits.shape[-1]
    check_labels(labels, num_labels)
    return F.cross_entropy(logits.float().reshape(-1, num_labels), labels.reshape(-1), ignore_index=-100)


def classification_loss(config, logits: Tensor, labels: Tensor) -> Tensor:
    """transformers' convention: regression for 1 label, single- or multi-label otherwise."""
    num_labels = config.num_labels
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1).float(), labels.float().view(-1))
    if config.problem_type == "single_label_classification":
        return label_cross_entropy(logits, labels)
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


def span_loss(start_logits: Tensor, end_logits: Tensor, start_positions: Tensor, end_positions: Tensor) -> Tensor:
    """Mean of the start and end cross-entropies; as in transformers, positions outside the
    input are clamped to the length and ignored."""
    ignored = start_logits.size(1)
    start = start_positions.view(-1).clamp(0, ignored)
    end = end_positions.view(-1).clamp(0, ignored)
    return (F.cross_entropy(start_logits.float(), start, ignore_index=ignored)
            + F.cross_entropy(end_logits.float(), end, ignore_index=ignored)) / 2
