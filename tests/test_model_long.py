"""Long input: the tiny preset runs a 65,536-token forward on a CPU."""

import resource

import pytest
import torch

from aveyb.config import preset_config
from aveyb.model import AveyBModel
from aveyb.model.ranker import maxsim_scores, split_sequence


@pytest.mark.slow
def test_65536_token_forward_on_cpu():
    torch.manual_seed(0)
    model = AveyBModel(preset_config("tiny", vocab_size=512)).eval()
    ids = torch.randint(0, 512, (1, 65536))
    with torch.no_grad():
        out = model(ids).last_hidden_state
    assert out.shape == (1, 65536, 64) and torch.isfinite(out).all()
    # Far below the 17 GB a full 65,536² fp32 similarity matrix would take.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 8 * 1024 * 1024  # KiB


def test_chunked_maxsim_equals_one_shot(monkeypatch):
    """Chunking the query splits (to bound memory) must not change the scores."""
    torch.manual_seed(0)
    xs, ms = split_sequence(torch.randn(2, 45, 8, dtype=torch.float64), None, 4)
    ms[1, -2:] = False
    whole = maxsim_scores(xs, ms, 1e-12)
    monkeypatch.setattr("aveyb.model.ranker._MAXSIM_CHUNK_ELEMENTS", 1)
    torch.testing.assert_close(maxsim_scores(xs, ms, 1e-12), whole)
    left = maxsim_scores(xs, ms, 1e-12, left_only=True)
    lower = torch.tril(torch.ones(12, 12, dtype=torch.bool))
    torch.testing.assert_close(left[:, lower], whole[:, lower])
