"""Masking (SPEC 9): rate, strategies, special tokens, determinism."""

import pytest
import torch

from aveyb.data.masking import IGNORE_INDEX, MaskingConfig, mask_batch, mask_sequence

SPECIALS = (0, 1, 2)  # pad, eos, mask
MASK_ID = 2


def _batch(n=64, T=256, vocab=1000, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (n, T), generator=g)
    ids[:, ::17] = 1  # EOS separators
    return ids


@pytest.mark.parametrize("rate", [0.15, 0.2, 0.3])
def test_rate_and_labels(rate):
    ids = _batch()
    cfg = MaskingConfig(mask_token_id=MASK_ID, special_ids=SPECIALS, vocab_size=1000, rate=rate)
    inputs, labels = mask_batch(ids, None, list(range(len(ids))), cfg)
    chosen = labels != IGNORE_INDEX
    eligible = ids != 1
    assert abs(chosen.sum().item() / eligible.sum().item() - rate) < 0.01
    assert torch.equal(labels[chosen], ids[chosen])
    assert (inputs[chosen] == MASK_ID).all()                # strategy "mask": every chosen token
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_special_and_padding_never_masked():
    ids = _batch()
    attn = torch.ones_like(ids)
    attn[:, 200:] = 0
    ids[:, 200:] = 0
    cfg = MaskingConfig(mask_token_id=MASK_ID, special_ids=SPECIALS, vocab_size=1000, rate=0.9)
    inputs, labels = mask_batch(ids, attn, list(range(len(ids))), cfg)
    chosen = labels != IGNORE_INDEX
    assert not chosen[ids == 1].any()
    assert not chosen[:, 200:].any()
    assert torch.equal(inputs[ids == 1], ids[ids == 1])


def test_bert_strategy_80_10_10():
    ids = _batch(n=128)
    cfg = MaskingConfig(mask_token_id=MASK_ID, special_ids=SPECIALS, vocab_size=1000, rate=0.2, strategy="bert")
    inputs, labels = mask_batch(ids, None, list(range(len(ids))), cfg)
    chosen = labels != IGNORE_INDEX
    n = chosen.sum().item()
    to_mask = (inputs[chosen] == MASK_ID).sum().item() / n
    kept = (inputs[chosen] == ids[chosen]).sum().item() / n
    assert abs(to_mask - 0.8) < 0.02
    assert abs(kept - 0.1) < 0.02 + 0.002  # random replacements can hit the same id (1/997)
    assert not torch.isin(inputs[chosen & (inputs != MASK_ID)], torch.tensor([0, 1])).any()


def test_deterministic_per_sequence_index():
    ids = _batch(n=4)
    cfg = MaskingConfig(mask_token_id=MASK_ID, special_ids=SPECIALS, vocab_size=1000, seed=5)
    a = mask_batch(ids, None, [10, 11, 12, 13], cfg)
    b = mask_batch(ids, None, [10, 11, 12, 13], cfg)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # the same sequence gets the same mask whatever batch it is in
    single = mask_sequence(ids[2], None, 12, cfg)
    assert torch.equal(single[1], a[1][2])
    other = mask_batch(ids, None, [20, 21, 22, 23], cfg)
    assert not torch.equal(other[1], a[1])
    reseeded = mask_batch(ids, None, [10, 11, 12, 13], MaskingConfig(MASK_ID, SPECIALS, 1000, seed=6))
    assert not torch.equal(reseeded[1], a[1])


def test_short_sequence_always_gets_a_target():
    ids = torch.tensor([[5, 6, 1, 0, 0]])
    cfg = MaskingConfig(mask_token_id=MASK_ID, special_ids=SPECIALS, vocab_size=1000, rate=0.01)
    for i in range(20):
        _, labels = mask_batch(ids, torch.tensor([[1, 1, 1, 0, 0]]), [i], cfg)
        assert (labels != IGNORE_INDEX).sum() >= 1


@pytest.mark.parametrize("kwargs", [dict(rate=0.0), dict(rate=1.0), dict(strategy="random")])
def test_bad_config(kwargs):
    with pytest.raises(ValueError):
        MaskingConfig(mask_token_id=MASK_ID, special_ids=SPECIALS, vocab_size=1000, **kwargs)
