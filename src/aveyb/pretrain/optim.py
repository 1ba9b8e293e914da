"""AdamW with the paper's settings and the learning-rate schedules (SPEC section 9).

Weight decay applies only to tensors of rank >= 2 (matrices, embeddings, ``P``, ``D``);
biases, norm scales and the scalar ``alpha`` are not decayed. The schedule is a pure
function of the step, so resuming needs nothing but the step number.
"""

from __future__ import annotations

import math

import torch


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if param.dim() >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.AdamW:
    fused = all(p.is_cuda for p in model.parameters())
    return torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas),
                             eps=cfg.eps, fused=fused or None)


def lr_factor(step: int, total: int, schedule: str, warmup_fraction: float = 0.1,
              decay_fraction: float = 0.2, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak LR at optimizer step ``step`` (0-based) of ``total``.

    ``cosine``: linear warm-up over ``warmup_fraction`` of the steps, then cosine to
    ``min_ratio``. ``wsd``: warm-up, constant, then linear decay to ``min_ratio`` over the
    last ``decay_fraction``. ``constant``: warm-up then constant.
    """
    warmup = int(round(warmup_fraction * total))
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(1, total - warmup)
        progress = min(1.0, (step - warmup) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "wsd":
        decay = max(1, int(round(decay_fraction * total)))
        start = total - decay
        if step < start:
            return 1.0
        progress = min(1.0, (step - start) / decay)
        return min_ratio + (1 - min_ratio) * (1 - progress)
    raise ValueError(f"unknown schedule {schedule!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
