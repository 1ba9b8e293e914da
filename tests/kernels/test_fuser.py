"""The fuser and the residual (``aveyb.kernels.fuser``): out = W_f · [G ⊙ mix(U) ; Zb] + b_f + α · X
and the row statistics of out that the next layer's enricher reads."""

from __future__ import annotations

import pytest
import torch
from parity import (
    check_inference_gemm_config,
    check_interpreted,
    check_training_layer_config,
    config_cases,
    gpu,
    interpreter,
    rel,
)

triton = pytest.importorskip("triton")
from aveyb.kernels import fuser  # noqa: E402
from aveyb.kernels._triton_utils import _GEMM_CONFIGS, _TMA_CONFIGS, tensor_descriptor  # noqa: E402
from aveyb.kernels.rms_norm import RowStats  # noqa: E402


@interpreter
def test_fuser_tma_interpreted():
    """The persistent TMA fuser, 3 programs over 200 rows, on the strided view Z[:, d:]: bias,
    residual, and the row statistics of the output."""
    rows, width, expansion = 200, 128, 4
    x = torch.randn(rows, width)
    f = torch.randn(rows, expansion * width)[:, width:]
    wf = torch.randn(width, (expansion - 1) * width) / (3 * width) ** 0.5
    bf, alpha = torch.randn(width) * 0.1, torch.tensor(0.8)
    out = torch.empty(rows, width)
    parts = RowStats.buffer(rows, width, x.device)
    fuser._fuser_tma_kernel[lambda meta: (3,)](
        tensor_descriptor(f), tensor_descriptor(wf), tensor_descriptor(x), tensor_descriptor(out), bf, alpha, parts,
        rows, width, (expansion - 1) * width, parts.shape[1], 256, NUM_SMS=3)
    out_ref = f @ wf.T + bf + alpha * x
    count = triton.cdiv(width, fuser._fuser_tma_kernel.best_config.kwargs["BLOCK_N"])
    check_interpreted("TMA fuser", rel(out, out_ref))
    check_interpreted("row statistics", rel(parts[:, :count].sum(1), out_ref.pow(2).sum(1)))


@gpu
@pytest.mark.parametrize("cfg", config_cases("cast_colsum", fuser._COLSUM_CONFIGS))
def test_cast_colsum_config(cfg):
    """The training path's output-gradient cast and bias-gradient sums, every config, through the
    training layer."""
    check_training_layer_config(fuser._cast_colsum_kernel, cfg)


GEMM_CASES = [  # (name, kernel, configs, dtype, KernelOptions fields)
    ("tma", fuser._fuser_tma_kernel, _TMA_CONFIGS, torch.bfloat16, {}),
    # the pointer kernel: 16-bit data on GPUs before Hopper, and fp32 everywhere
    ("pointer-bf16", fuser._fuser_kernel, _GEMM_CONFIGS, torch.bfloat16, {"gemm_tma": False}),
    ("pointer-fp32", fuser._fuser_kernel, _GEMM_CONFIGS, torch.float32, {}),
]


@gpu
@pytest.mark.parametrize("kernel, dtype, options, cfg",
                         [p for name, k, cs, dt, opt in GEMM_CASES for p in config_cases(name, cs, k, dt, opt)])
def test_fuser_config(kernel, dtype, options, cfg):
    """Every config of the fuser GEMMs (epilogue and row statistics included): three chained padded
    dynamic layers."""
    check_inference_gemm_config(kernel, dtype, options, cfg, tma=kernel is fuser._fuser_tma_kernel)
