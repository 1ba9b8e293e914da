"""RMSNorm where it is not folded into the enricher (``aveyb.kernels.rms_norm``): the first layer's
row statistics and the training path's forward and backward, against :func:`aveyb.model.layers.rms_norm`."""

from __future__ import annotations

import pytest
import torch
from parity import check_interpreted, check_training_layer_config, config_cases, gpu, interpreter, rel

pytest.importorskip("triton")
from aveyb.kernels import rms_norm  # noqa: E402
from aveyb.model import layers as ref  # noqa: E402


@interpreter
@pytest.mark.parametrize("rows, width", [(37, 48), (70, 36)], ids=["d48", "d36"])  # 36: xn's pad is not 8
def test_rms_norm_interpreted(rows, width):
    """Row statistics; xn = RMSNorm(x) with its ones column (the bias gradient's), r; and dx (the
    residual's share included), dg, dα against float64 autograd of Σ dxn ⊙ RMSNorm(x) + Σ dout ⊙ α·x."""
    eps = 1e-6
    x, g, alpha = torch.randn(rows, width), torch.rand(width) + 0.5, torch.tensor([0.8])
    stats = rms_norm.row_stats(x)
    check_interpreted("row statistics", rel(stats.parts[:, :stats.count].sum(1), x.double().pow(2).sum(1)))

    xn, rstd = rms_norm.rms_norm_forward(x, g, eps, torch.float32)
    assert xn.shape[1] % 8 == 0 and bool((xn[:, width] == 1).all()) and bool((xn[:, width + 1:] == 0).all())
    x64, g64, a64 = (t.double().requires_grad_(True) for t in (x, g, alpha))
    want = ref.rms_norm(x64, g64, eps)
    check_interpreted("RMSNorm", rel(xn[:, :width], want), rel(ref.rms_norm(x, g, eps), want))
    check_interpreted("r", rel(rstd, torch.rsqrt(x64.detach().pow(2).mean(-1) + eps)))

    dxn, dout = torch.randn(rows, width), torch.randn(rows, width)
    dx, dg, dalpha = rms_norm.rms_norm_backward(dxn, x, rstd, g, dout, alpha)
    loss = (want * dxn.double()).sum() + (a64 * x64 * dout.double()).sum()
    for name, got, grad in zip(("dx", "dg", "dα"), (dx, dg, dalpha), torch.autograd.grad(loss, (x64, g64, a64))):
        check_interpreted(name, rel(got.reshape(grad.shape), grad))


@gpu
@pytest.mark.parametrize("kernel, cfg", config_cases("rms_forward", rms_norm._ROW_CONFIGS, rms_norm._rms_forward_kernel)
                         + config_cases("rms_backward", rms_norm._ROW_CONFIGS, rms_norm._rms_backward_kernel))
def test_rms_norm_config(kernel, cfg):
    """Every config of both kernels, through the training layer (padded, bf16, every gradient)."""
    check_training_layer_config(kernel, cfg)
