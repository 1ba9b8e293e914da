"""Every architecture, built through ``build_masked_lm``, pretrains a few MLM steps on CPU
(loss falls), saves, reloads (same outputs), and fine-tunes on a tiny classification task
(loss falls); published-style checkpoints load through ``load_pretrained`` with every head."""

from __future__ import annotations

import pytest
import torch

from aveyb.architectures import HEADS, architecture_names, build_masked_lm, build_model, load_pretrained

ARCHITECTURES = architecture_names()

VOCAB, PAD, MASK = 64, 0, 1


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _mlm_batch(seed=0, batch=8, length=48):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (batch, length), generator=generator)
    attention = torch.ones_like(ids)
    attention[1, 30:] = 0  # one padded row
    ids = ids.masked_fill(attention == 0, PAD)
    masked = (torch.rand(ids.shape, generator=generator) < 0.2) & attention.bool()
    labels = ids.masked_fill(~masked, -100)
    return ids.masked_fill(masked, MASK), attention, labels


def _train(model, steps, lr, **batch):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_pretrain_save_reload_finetune(arch, tmp_path):
    torch.manual_seed(0)
    model = build_masked_lm(arch, "tiny", VOCAB, pad_token_id=PAD)
    ids, attention, labels = _mlm_batch()
    losses = _train(model, 12, 3e-3, input_ids=ids, attention_mask=attention, labels=labels)
    assert losses[-1] < 0.9 * losses[0], f"{arch} MLM loss did not fall: {losses}"

    model.eval()
    model.save_pretrained(tmp_path / "pretrained")
    assert (tmp_path / "pretrained" / "model.safetensors").exists()
    reloaded = load_pretrained(str(tmp_path / "pretrained"))
    assert type(reloaded) is type(model)
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(input_ids=ids, attention_mask=attention).logits,
            model(input_ids=ids, attention_mask=attention).logits, rtol=0, atol=0,
        )

    # Tiny task: is token 5 in the sequence?
    torch.manual_seed(1)
    classifier = load_pretrained(str(tmp_path / "pretrained"), head="sequence_classification", num_labels=2)
    task_ids = torch.randint(6, VOCAB, (16, 24))
    task_labels = torch.arange(16) % 2
    task_ids[task_labels == 1, 7] = 5
    losses = _train(classifier, 15, 1e-3, input_ids=task_ids, attention_mask=torch.ones_like(task_ids),
                    labels=task_labels)
    assert min(losses[-3:]) < 0.8 * losses[0], f"{arch} fine-tuning loss did not fall: {losses}"


@pytest.mark.parametrize("arch", ["bert", "roberta", "modernbert", "neobert"])
def test_saved_checkpoint_loads_with_every_head(arch, tmp_path):
    build_masked_lm(arch, "tiny", VOCAB).save_pretrained(tmp_path)
    ids = torch.randint(4, VOCAB, (2, 10))
    for head in HEADS:
        model = load_pretrained(str(tmp_path), head=head)
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
        assert out is not None
    encoder = load_pretrained(str(tmp_path), head="base")
    full = load_pretrained(str(tmp_path))
    torch.testing.assert_close(encoder.get_input_embeddings().weight, full.get_input_embeddings().weight)


def test_build_model_heads_and_labels():
    model = build_model("neobert", "tiny", VOCAB, head="token_classification", num_labels=7)
    assert model(input_ids=torch.randint(4, VOCAB, (1, 5))).logits.shape == (1, 5, 7)
    with pytest.raises(ValueError):
        build_model("bert", "tiny", VOCAB, head="causal_lm")
