import pytest
import torch
import torch.nn.functional as F

from aveyb.config import AveyBConfig
from aveyb.model import (
    AveyBForMaskedLM,
    AveyBForQuestionAnswering,
    AveyBForSequenceClassification,
    AveyBForTokenClassification,
    AveyBModel,
    mean_pool,
)

VOCAB = 40


def config(**extra):
    return AveyBConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, split_size=4, num_retrieved_splits=1, **extra)


@pytest.fixture
def ids():
    return torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(0))


def test_mlm_logits_are_tied_to_the_embedding_and_ignore_minus_100(ids):
    model = AveyBForMaskedLM(config()).eval()
    labels = ids.clone()
    labels[:, ::2] = -100
    out = model(ids, labels=labels, output_hidden_states=True)
    hidden = out.hidden_states[-1]
    torch.testing.assert_close(out.logits, hidden @ model.model.embed.weight.T)
    keep = labels != -100
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[keep], labels[keep]))
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1


def test_sparse_prediction_gives_the_same_loss(ids):
    torch.manual_seed(0)
    dense = AveyBForMaskedLM(config()).eval()
    sparse = AveyBForMaskedLM(config(sparse_prediction=True)).eval()
    sparse.load_state_dict(dense.state_dict())
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    out = sparse(ids, labels=labels)
    assert out.logits.shape == (2, VOCAB)
    torch.testing.assert_close(out.loss, dense(ids, labels=labels).loss)


def test_sparse_prediction_keeps_labelled_rows_in_order(ids):
    """The labelled positions are gathered before the encoder runs: the logits must still be the
    dense model's rows at those positions, in row-major order, with their own labels."""
    torch.manual_seed(1)
    dense = AveyBForMaskedLM(config()).eval()
    sparse = AveyBForMaskedLM(config(sparse_prediction=True)).eval()
    sparse.load_state_dict(dense.state_dict())
    labels = torch.full_like(ids, -100)
    picks = [(0, 1), (0, 7), (1, 0), (1, 4), (1, 9)]
    for b, t in picks:
        labels[b, t] = (ids[b, t] + t) % VOCAB
    out = sparse(ids, labels=labels)
    ref = dense(ids, labels=labels)
    torch.testing.assert_close(out.logits, torch.stack([ref.logits[b, t] for b, t in picks]))
    torch.testing.assert_close(out.loss, ref.loss)


@pytest.mark.parametrize("sparse", [False, True])
def test_masked_lm_rejects_labels_of_another_shape(ids, sparse):
    model = AveyBForMaskedLM(config(sparse_prediction=sparse)).eval()
    with pytest.raises(ValueError, match=r"labels must have shape \(2, \d+\), got \(2, 3\)"):
        model(ids, labels=torch.zeros(2, 3, dtype=torch.long))


def test_sequence_classification_head_follows_the_spec(ids):
    model = AveyBForSequenceClassification(config(num_labels=3)).eval()
    assert [type(m).__name__ for m in model.dense] == ["Linear", "_Act", "Linear", "_Act", "Linear"]
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    out = model(ids, attention_mask=mask, labels=torch.tensor([0, 2]), output_hidden_states=True)
    pooled = mean_pool(out.hidden_states[-1], mask)
    torch.testing.assert_close(out.logits, model.classifier(model.dense(pooled)))
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, torch.tensor([0, 2])))


def test_regression_uses_mse(ids):
    model = AveyBForSequenceClassification(config(num_labels=1)).eval()
    target = torch.tensor([0.5, -1.0])
    out = model(ids, labels=target)
    torch.testing.assert_close(out.loss, F.mse_loss(out.logits.squeeze(-1), target))


def test_token_classification_ignores_padding_and_minus_100(ids):
    model = AveyBForTokenClassification(config(num_labels=5)).eval()
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    labels = torch.randint(0, 5, ids.shape)
    labels[1, 0] = -100
    out = model(ids, attention_mask=mask, labels=labels)
    keep = (mask == 1) & (labels != -100)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[keep], labels[keep]))


def test_question_answering_loss_and_padding(ids):
    model = AveyBForQuestionAnswering(config()).eval()
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    start, end = torch.tensor([2, 1]), torch.tensor([4, 3])
    out = model(ids, attention_mask=mask, start_positions=start, end_positions=end)
    want = (F.cross_entropy(out.start_logits, start) + F.cross_entropy(out.end_logits, end)) / 2
    torch.testing.assert_close(out.loss, want)
    assert out.start_logits[1, 5:].max() < -1e30, "padded positions can never be an answer"


@pytest.mark.parametrize("head,kwargs", [
    (AveyBForSequenceClassification, {"labels": torch.tensor([0, 7])}),
    (AveyBForTokenClassification, {"labels": torch.full((2, 10), 9)}),
    (AveyBForMaskedLM, {"labels": torch.full((2, 10), VOCAB)}),
])
def test_labels_out_of_range_are_clear_errors(head, kwargs, ids):
    model = head(config(num_labels=3))
    with pytest.raises(ValueError, match=r"labels must be -100 \(ignored\) or in \[0, \d+\)"):
        model(ids, **kwargs)


@pytest.mark.parametrize("bad,error,message", [
    (lambda ids: ids.float(), TypeError, "integer token ids"),
    (lambda ids: ids[0], ValueError, r"shape \(batch, length\)"),
    (lambda ids: ids[:, None], ValueError, r"shape \(batch, length\)"),
    (lambda ids: ids[:, :0], ValueError, "empty input"),
    (lambda ids: ids.clone().fill_(VOCAB), ValueError, r"\[0, 40\)"),
    (lambda ids: ids.clone().fill_(-3), ValueError, r"\[0, 40\)"),
    (lambda ids: ids.tolist(), TypeError, "torch.Tensor"),
])
def test_bad_ids_are_clear_errors(ids, bad, error, message):
    with pytest.raises(error, match=message):
        AveyBModel(config())(bad(ids))


def test_bad_attention_masks_are_clear_errors(ids):
    model = AveyBModel(config())
    with pytest.raises(ValueError, match="attention_mask must have the shape"):
        model(ids, attention_mask=torch.ones(2, 9))
    empty = torch.ones_like(ids)
    empty[1] = 0
    with pytest.raises(ValueError, match="no real token"):
        model(ids, attention_mask=empty)


def test_tuple_outputs_without_return_dict(ids):
    out = AveyBForMaskedLM(config())(ids, labels=ids, return_dict=False)
    assert isinstance(out, tuple) and out[0].dim() == 0 and out[1].shape == (2, 10, VOCAB)


def test_training_step_reduces_the_loss(ids):
    torch.manual_seed(0)
    model = AveyBForMaskedLM(config())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_gradient_checkpointing_gives_the_same_gradients(ids):
    torch.manual_seed(0)
    model = AveyBForMaskedLM(config())
    model.train()
    model(ids, labels=ids).loss.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    layer = model.model.layers[0]
    calls, backend = [], layer.backend

    class Counting:  # the layer's backend, counting its calls
        def layer(self, *args):
            calls.append(1)
            return backend.layer(*args)

    layer.backend = Counting()
    model(ids, labels=ids).loss.backward()
    assert len(calls) == 2, "the layer must be recomputed in the backward pass"
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, want[name], msg=name)
