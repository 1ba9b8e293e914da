"""SPEC 8: a sequence's outputs alone equal its outputs inside a right-padded batch."""

import itertools

import pytest
import torch

from aveyb.config import AveyBConfig
from aveyb.model import (
    AveyBForQuestionAnswering,
    AveyBForSequenceClassification,
    AveyBForTokenClassification,
    AveyBModel,
)

VOCAB = 50


def tiny_config(**options):
    base = dict(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=3, split_size=4, num_retrieved_splits=2)
    return AveyBConfig(**{**base, **options})


def padded_batch(lengths, generator):
    """Right-padded ids and mask; pad ids are random so that a leak would show."""
    width = max(lengths)
    ids = torch.randint(0, VOCAB, (len(lengths), width), generator=generator)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    return ids, mask


OPTIONS = list(itertools.product(
    ["left", "both"], ["min", "max", "none"], [True, False],
    ["interleaved_static_first", "dynamic_only", "coupled"], ["sum", "softmax", "none", "signed_sum"],
))


@pytest.mark.parametrize("direction,weighting,compression,arrangement,norm", OPTIONS)
def test_alone_equals_in_padded_batch(direction, weighting, compression, arrangement, norm):
    torch.manual_seed(0)
    config = tiny_config(ranker_direction=direction, split_weighting=weighting, compression=compression,
                         layer_arrangement=arrangement, dynamic_norm=norm)
    model = AveyBModel(config).double().eval()
    # 13: not a multiple of S; 6: leaves two whole splits of padding; 16: exactly 4 splits.
    lengths = [13, 6, 16, 1]
    ids, mask = padded_batch(lengths, torch.Generator().manual_seed(1))
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).last_hidden_state
        for row, length in enumerate(lengths):
            alone = model(ids[row:row + 1, :length]).last_hidden_state[0]
            torch.testing.assert_close(batched[row, :length], alone, rtol=1e-10, atol=1e-10)
            assert torch.all(batched[row, length:] == 0), "padded positions must come out as zeros"


@pytest.mark.parametrize("head", [AveyBForSequenceClassification, AveyBForTokenClassification,
                                  AveyBForQuestionAnswering])
def test_heads_ignore_padding(head):
    torch.manual_seed(0)
    model = head(tiny_config(num_labels=3)).double().eval()
    lengths = [11, 5]
    ids, mask = padded_batch(lengths, torch.Generator().manual_seed(2))
    with torch.no_grad():
        batched = model(ids, attention_mask=mask)
        for row, length in enumerate(lengths):
            alone = model(ids[row:row + 1, :length])
            for name in ("logits", "start_logits", "end_logits"):
                if getattr(alone, name, None) is None:
                    continue
                got, want = getattr(batched, name)[row], getattr(alone, name)[0]
                if got.dim() >= 1 and head is not AveyBForSequenceClassification:
                    got = got[:length]
                torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_gradients_do_not_flow_from_padding():
    torch.manual_seed(0)
    model = AveyBModel(tiny_config())
    ids, mask = padded_batch([9, 4], torch.Generator().manual_seed(3))
    embeds = model.embed(ids).detach().requires_grad_(True)
    model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state.sum().backward()
    assert torch.all(embeds.grad[1, 4:] == 0)
    assert torch.isfinite(embeds.grad).all() and embeds.grad[1, :4].abs().sum() > 0


def test_all_padding_splits_stay_finite_with_softmax():
    model = AveyBModel(tiny_config(dynamic_norm="softmax", layer_arrangement="dynamic_only"))
    ids, mask = padded_batch([15, 2], torch.Generator().manual_seed(4))
    out = model(ids, attention_mask=mask).last_hidden_state
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
