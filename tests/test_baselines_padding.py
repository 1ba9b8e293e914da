"""Padding: every baseline gives a sequence the same outputs alone and inside a right-padded
batch, on its real tokens, at lengths from 1 to the full configured context (tiny preset:
256), including lengths that cross ModernBERT's sliding window (tiny preset: 32 tokens)."""

from __future__ import annotations

import pytest
import torch

from aveyb.architectures import build_model
from aveyb.baselines.modernbert import LOCAL_ATTENTION

VOCAB = 120
PAD = 0
# 1, shorter than the window, crossing it several times, and the full context.
LENGTHS = (1, 17, 33, 70, 256)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _alone_vs_batched(model, lengths, tol, low_id=3):
    torch.manual_seed(1)
    seqs = [torch.randint(low_id, VOCAB, (n,)) for n in lengths]
    longest = max(lengths)
    ids = torch.full((len(seqs), longest), PAD)
    mask = torch.zeros(len(seqs), longest, dtype=torch.long)
    for i, seq in enumerate(seqs):
        ids[i, : len(seq)], mask[i, : len(seq)] = seq, 1
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask).logits
        for i, seq in enumerate(seqs):
            alone = model(input_ids=seq[None], attention_mask=torch.ones(1, len(seq), dtype=torch.long)).logits
            torch.testing.assert_close(batched[i, : len(seq)], alone[0], rtol=tol, atol=tol)


# float64 where the attention path supports it; transformers' eager path softmaxes in float32,
# which turns float64's mask value into -inf (NaN rows at padded queries), so eager runs float32.
@pytest.mark.parametrize(
    "arch, attn, dtype",
    [("bert", "sdpa", torch.float64), ("bert", "eager", torch.float32), ("roberta", "sdpa", torch.float64),
     ("modernbert", "sdpa", torch.float64), ("modernbert", "eager", torch.float32), ("neobert", None, torch.float64)],
)
def test_sequence_alone_equals_sequence_in_padded_batch(arch, attn, dtype):
    overrides = {"pad_token_id": PAD} if arch != "roberta" else {}
    model = build_model(arch, "tiny", VOCAB, **overrides).to(dtype).eval()
    if attn is not None:
        model.set_attn_implementation(attn)
    assert model.config.max_position_embeddings >= max(LENGTHS)
    # RoBERTa's pad id is 1 by default: keep real tokens away from it.
    _alone_vs_batched(model, LENGTHS, tol=1e-9 if dtype == torch.float64 else 2e-5)


def test_modernbert_tiny_has_local_layers_narrower_than_the_test_lengths():
    config = build_model("modernbert", "tiny", VOCAB).config
    assert "sliding_attention" in config.layer_types and "full_attention" in config.layer_types
    assert LOCAL_ATTENTION["tiny"] == config.local_attention < max(LENGTHS)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_modernbert_local_layer_sees_half_a_window_each_side(attn):
    """One sliding-window layer: token j changes the output of token i iff |i - j| <= window/2
    (the original ModernBERT's flash-attention window (64, 64) for ``local_attention=128``)."""
    model = build_model("modernbert", "tiny", VOCAB, num_hidden_layers=1, layer_types=["sliding_attention"])
    model = model.double().eval()
    model.set_attn_implementation(attn)
    ids = torch.randint(3, VOCAB, (1, 100))
    changed = ids.clone()
    changed[0, 40] = (ids[0, 40] + 1) % VOCAB
    with torch.no_grad():
        diff = (model(input_ids=ids).logits - model(input_ids=changed).logits).abs().amax(-1)[0]
    affected = (diff > 0).nonzero().flatten()
    half = LOCAL_ATTENTION["tiny"] // 2
    assert affected.min().item() == 40 - half and affected.max().item() == 40 + half
