"""Masked-language-model corruption (SPEC section 9).

Every token that is not special (EOS, pad, mask, ...) and not padding is chosen with
probability ``rate`` (default 0.2), independently. Strategy ``mask`` (official) replaces
every chosen token by the mask token; ``bert`` replaces 80% by the mask token, 10% by a
random non-special token and keeps 10%. Labels hold the original id at chosen positions
and -100 elsewhere, so the loss covers masked positions only.

Randomness comes from a generator seeded by ``(seed, sequence index)``: a sequence gets
the same mask whatever the batch size, the number of ranks, or a resume in between.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

STRATEGIES = ("mask", "bert")
IGNORE_INDEX = -100


@dataclass(frozen=True)
class MaskingConfig:
    mask_token_id: int
    special_ids: tuple[int, ...]
    vocab_size: int            # the tokenizer's length: random replacements come from [0, vocab_size)
    rate: float = 0.2
    strategy: str = "mask"
    seed: int = 0

    def __post_init__(self):
        if not 0.0 < self.rate < 1.0:
            raise ValueError(f"mask rate must be in (0, 1), got {self.rate}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"mask strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}")


def _generator(seed: int, index: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + index * 7_919 + 12_345) % (2**63 - 1))
    return g


def mask_sequence(ids: torch.Tensor, attention_mask: torch.Tensor | None, index: int,
                  cfg: MaskingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt one sequence ``ids`` (1-D int64); returns ``(input_ids, labels)``."""
    g = _generator(cfg.seed, index)
    eligible = ~torch.isin(ids, torch.tensor(cfg.special_ids, dtype=ids.dtype))
    if attention_mask is not None:
        eligible &= attention_mask.bool()
    chosen = (torch.rand(ids.shape, generator=g) < cfg.rate) & eligible
    if not chosen.any() and eligible.any():  # never a sequence without a target
        candidates = eligible.nonzero().flatten()
        chosen[candidates[torch.randint(len(candidates), (1,), generator=g)]] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    corrupted = ids.clone()
    if cfg.strategy == "mask":
        corrupted[chosen] = cfg.mask_token_id
        return corrupted, labels
    roll = torch.rand(ids.shape, generator=g)
    to_mask = chosen & (roll < 0.8)
    to_random = chosen & (roll >= 0.8) & (roll < 0.9)
    corrupted[to_mask] = cfg.mask_token_id
    allowed = _allowed_ids(cfg)
    picks = allowed[torch.randint(len(allowed), ids.shape, generator=g)]
    corrupted[to_random] = picks[to_random]
    return corrupted, labels


_ALLOWED_CACHE: dict = {}


def _allowed_ids(cfg: MaskingConfig) -> torch.Tensor:
    key = (cfg.vocab_size, cfg.special_ids)
    if key not in _ALLOWED_CACHE:
        keep = torch.ones(cfg.vocab_size, dtype=torch.bool)
        keep[[i for i in cfg.special_ids if i < cfg.vocab_size]] = False
        _ALLOWED_CACHE[key] = keep.nonzero().flatten()
    return _ALLOWED_CACHE[key]


def mask_batch(ids: torch.Tensor, attention_mask: torch.Tensor | None, indices: list[int],
               cfg: MaskingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt a batch ``(B, T)``; ``indices[b]`` is sequence ``b``'s global index (its seed)."""
    out, labels = [], []
    for b, index in enumerate(indices):
        c, lab = mask_sequence(ids[b], None if attention_mask is None else attention_mask[b], index, cfg)
        out.append(c)
        labels.append(lab)
    return torch.stack(out), torch.stack(labels)
