"""The reference path on CUDA: bf16 autocast, torch.compile, padding (run on the device)."""

import pytest
import torch

from aveyb.config import AveyBConfig
from aveyb.model import AveyBForMaskedLM

pytestmark = pytest.mark.gpu


def config(**extra):
    return AveyBConfig(vocab_size=512, hidden_size=64, num_hidden_layers=4, split_size=32, num_retrieved_splits=3,
                       kernel_backend="torch", **extra)


def test_bf16_autocast_training_step_is_finite():
    torch.manual_seed(0)
    model = AveyBForMaskedLM(config()).cuda()
    ids = torch.randint(0, 512, (4, 300), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(ids, labels=ids).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_cuda_matches_cpu_in_float64():
    torch.manual_seed(0)
    model = AveyBForMaskedLM(config()).double()
    ids = torch.randint(0, 512, (2, 200))
    mask = torch.ones_like(ids)
    mask[1, 150:] = 0
    want = model(ids, attention_mask=mask).logits
    got = model.cuda()(ids.cuda(), attention_mask=mask.cuda()).logits.cpu()
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_compiled_model_matches_eager():
    torch.manual_seed(0)
    model = AveyBForMaskedLM(config()).cuda().eval()
    ids = torch.randint(0, 512, (2, 256), device="cuda")
    with torch.no_grad():
        want = model(ids).logits
        got = torch.compile(model)(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
