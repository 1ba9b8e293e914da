"""The CPU inference paths against the plain reference: the chunked, buffer-reusing encoder and the
compiled one (aveyb.serving, exact up to float rounding) and int8 dynamic quantisation (aveyb.quantize, an opt-in approximation with a
documented tolerance), on right-padded batches whose lengths are not multiples of S (tiny preset)."""

from __future__ import annotations

import pytest
import torch

import aveyb
from aveyb.quantize import INT8_TOLERANCE, is_quantized, quantize_dynamic_int8
from padded import right_padded_batch

VOCAB = 120
# Real length of each row (S = 16 in tiny): not multiples of S, a padded row, a single split.
CASES = [[37, 20], [5, 16, 9], [50]]


def _batch(lengths, seed=0):
    return right_padded_batch(lengths, VOCAB, seed)


def _check_padded_cases(fast, model, rtol, atol):
    """``fast`` gives the reference's hidden states on every case of CASES; padded positions stay zeros."""
    for i, lengths in enumerate(CASES):
        ids, mask = _batch(lengths, seed=i)
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
        got = fast(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(got, ref, rtol=rtol, atol=atol)
        assert torch.all(got[~mask.bool()] == 0)


def _relative(got, ref, mask):
    real = mask.bool()
    return float((got[real] - ref[real]).norm() / ref[real].norm())


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return aveyb.AveyBModel(aveyb.preset_config("tiny", vocab_size=VOCAB)).eval()


@pytest.mark.parametrize("chunk_rows", [16, 40, 1024])  # one split per chunk, 2 splits (a short last chunk), all
@pytest.mark.parametrize("variant", [{}, {"layer_arrangement": "dynamic_only"}, {"compression": False},
                                     {"layer_arrangement": "coupled", "dynamic_norm": "softmax"}])
def test_cpu_encoder_matches_reference_on_padded_batches(chunk_rows, variant):
    from aveyb.serving import CPUEncoder

    torch.manual_seed(0)
    model = aveyb.AveyBModel(aveyb.preset_config("tiny", vocab_size=VOCAB, **variant)).eval()
    fast = CPUEncoder(model, chunk_rows=chunk_rows)
    _check_padded_cases(fast, model, rtol=1e-5, atol=1e-6)
    ids, _ = _batch([45])  # no mask at all
    with torch.no_grad():
        torch.testing.assert_close(fast(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state,
                                   rtol=1e-5, atol=1e-6)


def test_optimize_for_cpu_serves_a_head_and_int8():
    from aveyb.serving import CPUEncoder, optimize_for_cpu

    torch.manual_seed(0)
    config = aveyb.preset_config("tiny", vocab_size=VOCAB, num_labels=5)
    head = aveyb.AveyBForTokenClassification(config).eval()
    ids, mask = _batch([37, 20], seed=2)
    with torch.no_grad():
        ref = head(input_ids=ids, attention_mask=mask).logits
    q = optimize_for_cpu(head, int8=True)  # a quantised copy: head itself is unchanged
    assert is_quantized(q) and not is_quantized(head) and isinstance(q.model, CPUEncoder)
    with torch.no_grad():
        got_int8 = q(input_ids=ids, attention_mask=mask).logits
    assert _relative(got_int8, ref, mask) < INT8_TOLERANCE
    fast = optimize_for_cpu(head, chunk_rows=32)  # fp32: in place, same weights
    assert fast is head and isinstance(head.model, CPUEncoder)
    with torch.no_grad():
        torch.testing.assert_close(head(input_ids=ids, attention_mask=mask).logits, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compiled_matches_reference_on_padded_batches(model):
    from aveyb.serving import compile_for_cpu

    _check_padded_cases(compile_for_cpu(model), model, rtol=1e-4, atol=1e-5)


def test_compiled_keeps_the_eager_input_checks(model):
    from aveyb.serving import compile_for_cpu

    fast = compile_for_cpu(model)
    ids, mask = _batch([10, 4])
    with pytest.raises(ValueError, match="vocab_size"):
        fast(input_ids=ids + VOCAB, attention_mask=mask)
    with pytest.raises(ValueError):
        fast(input_ids=ids, attention_mask=mask.flip(-1))  # left padding


def test_int8_is_close_to_fp32_and_runs_on_padded_batches(model):
    q = quantize_dynamic_int8(model)
    assert is_quantized(q) and not is_quantized(model)  # a copy: the fp32 model is untouched
    worst = 0.0
    for i, lengths in enumerate(CASES):
        ids, mask = _batch(lengths, seed=i)
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
            got = q(input_ids=ids, attention_mask=mask).last_hidden_state
        assert got.shape == ref.shape and torch.isfinite(got).all()
        assert torch.all(got[~mask.bool()] == 0)
        worst = max(worst, _relative(got, ref, mask))
    assert worst < INT8_TOLERANCE, worst
    # A row inside a padded batch against the row alone: equal up to int8 rounding (the activation
    # scale is per call, padded rows included), not exactly as in fp32.
    ids, mask = _batch([37, 20], seed=5)
    with torch.no_grad():
        batched = q(input_ids=ids, attention_mask=mask).last_hidden_state[1, :20]
        alone = q(input_ids=ids[1:, :20]).last_hidden_state[0]
    assert float((batched - alone).norm() / alone.norm()) < INT8_TOLERANCE


def test_int8_quantises_only_the_layers_of_a_head_model():
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    torch.manual_seed(0)
    clf = aveyb.AveyBForSequenceClassification(aveyb.preset_config("tiny", vocab_size=VOCAB, num_labels=3)).eval()
    q = quantize_dynamic_int8(clf)
    quantised = sorted(n for n, m in q.named_modules() if isinstance(m, DynamicLinear))
    n_layers = clf.config.num_hidden_layers
    assert len(quantised) == 2 * n_layers and all(".layers." in n for n in quantised), quantised
    ids, mask = _batch([30, 12], seed=1)
    with torch.no_grad():
        ref, got = (m(input_ids=ids, attention_mask=mask).logits for m in (clf, q))
    assert float((got - ref).norm() / ref.norm()) < INT8_TOLERANCE
    assert set(dict(q.named_parameters())) <= set(dict(clf.named_parameters()))  # same names


def test_int8_refuses_a_model_without_layers():
    with pytest.raises(ValueError, match="no Avey-B layers"):
        quantize_dynamic_int8(torch.nn.Linear(4, 4))
