"""The masked-LM loss kernel (``aveyb.kernels.loss``) against ``F.cross_entropy(logits.float(),
labels, ignore_index=-100)``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from parity import DTYPES, check, check_interpreted, gpu, interpreter, rel

pytest.importorskip("triton")
from aveyb.kernels import loss  # noqa: E402


@interpreter
def test_cross_entropy_interpreted():
    """Loss and gradient: ignored rows, V over two blocks with a tail (5000 = a 4096 block + a masked tail)."""
    logits = (torch.randn(7, 5000) * 4).requires_grad_(True)
    labels = torch.tensor([3, -100, 4999, 0, -100, 2048, 4095])
    want = F.cross_entropy(logits, labels, ignore_index=-100)
    (want_grad,) = torch.autograd.grad(want * 1.7, logits)
    got = loss.cross_entropy(logits, labels)
    (grad,) = torch.autograd.grad(got * 1.7, logits)
    check_interpreted("loss", rel(got.detach().reshape(1), want.detach().reshape(1)))
    check_interpreted("gradient", rel(grad, want_grad))


@gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("rows,vocab", [(333, 50368), (64, 1000)], ids=["V50368", "V1000"])
def test_cross_entropy_parity(rows, vocab, dtype):
    """The masked-LM loss kernel: loss and logits gradient, about a third of the rows ignored."""
    gen = torch.Generator(device="cuda").manual_seed(rows + vocab)
    logits = torch.randn(rows, vocab, generator=gen, device="cuda") * 3
    labels = torch.randint(0, vocab, (rows,), generator=gen, device="cuda")
    labels[torch.rand(rows, generator=gen, device="cuda") < 0.3] = -100
    labels[0], labels[1] = vocab - 1, 0  # both ends of the vocabulary
    results = []
    for x, fn in ((logits.double(), None), (logits.to(dtype), None), (logits.to(dtype), loss.cross_entropy)):
        x = x.detach().requires_grad_(True)
        out = (fn or (lambda lg, lb: torch.nn.functional.cross_entropy(lg.float() if lg.dtype != torch.float64 else lg,
                                                                        lb, ignore_index=-100)))(x, labels)
        (grad,) = torch.autograd.grad(out * 2.5, x)
        results.append((out.detach().reshape(1), grad))
    (want64, g64), (want, g), (got, g_got) = results
    assert g_got.dtype == dtype
    assert bool((g_got[labels == -100] == 0).all())
    check("cross-entropy loss", got, want, want64, dtype)
    check("cross-entropy grad", g_got, g, g64, dtype)


@gpu
def test_masked_lm_loss_uses_kernel_and_matches():
    """AveyBForMaskedLM's loss through the kernel equals the reference's, sparse and dense prediction."""
    from aveyb.architectures import build_masked_lm

    torch.manual_seed(4)
    dev = torch.device("cuda")
    ids = torch.randint(0, 211, (2, 90), device=dev)
    labels = torch.where(torch.rand(2, 90, device=dev) < 0.3, ids, torch.full_like(ids, -100))
    for sparse in (False, True):
        losses = []
        for backend in ("torch", "triton"):
            torch.manual_seed(5)
            model = build_masked_lm("avey-b", "tiny", 211, hidden_size=64, split_size=32, num_retrieved_splits=2,
                                    kernel_backend=backend, sparse_prediction=sparse).to(dev)
            out = model(input_ids=ids, labels=labels)
            out.loss.backward()
            losses.append((out.loss.detach(), model.model.embed.weight.grad))
        (l_ref, g_ref), (l_f, g_f) = losses
        assert rel(l_f, l_ref) < 1e-4 and rel(g_f, g_ref) < 1e-3, (sparse, float(l_f), float(l_ref))
