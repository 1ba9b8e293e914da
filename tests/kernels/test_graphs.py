"""CUDA-graph replay of the fused encoder (``aveyb.kernels.graphs``) against the eager fused forward."""

from __future__ import annotations

import pytest
import torch
from parity import DTYPES, gpu, needs_triton, rel

from aveyb.architectures import build_masked_lm
from aveyb.kernels.graphs import GraphedEncoder


def test_graphed_encoder_needs_cuda():
    model = build_masked_lm("avey-b", "tiny", 97)
    with pytest.raises(ValueError, match="CUDA"):
        GraphedEncoder(model)


@gpu
@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
def test_graphed_encoder_matches_eager(dtype):
    """CUDA-graph replay equals the eager fused forward, for new inputs of a captured shape, padded
    or not, and for a second shape; bad ids are still rejected before any replay."""
    torch.manual_seed(5)
    dev = torch.device("cuda")
    model = build_masked_lm("avey-b", "tiny", 211, hidden_size=128, split_size=32, num_retrieved_splits=2,
                            kernel_backend="triton").to(dev, dtype).eval()
    encoder = GraphedEncoder(model)
    for batch, length, padded in ((2, 96, False), (3, 150, True), (2, 96, False)):
        for _ in range(2):  # the second call replays with new inputs copied into the captured buffers
            ids = torch.randint(0, 211, (batch, length), device=dev)
            mask = None
            if padded:
                mask = torch.ones(batch, length, dtype=torch.long, device=dev)
                mask[1, 100:] = 0
            with torch.no_grad():
                eager = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
            graphed = encoder(ids, mask)
            assert rel(graphed, eager) < 1e-6, (batch, length, padded)
    assert len(encoder._graphs) == 2
    with pytest.raises(ValueError, match="input_ids must lie in"):
        encoder(torch.full((2, 96), 500, device=dev))
